/* Reward net: the learned preference model (design §5, a PickScore analogue):
 * image (B, 3, 32, 32) in [0, 1] + prompt tokens -> one scalar per image,
 * trained with the Bradley-Terry loss on rater pairs (docs/rater.md).
 *
 *   e   = embedding[ids]                                        (B, T, E)
 *   g   = masked mean over t of silu(text.fc([e_t, e_t+1, e_t+2]))  (B, D) word trigrams
 *   x   = [2 img - 1, xcoord, ycoord]                           (B, 5, S, S) CoordConv
 *   h   = conv_in(x)
 *   per block i: h = conv_i(silu(film_i(gn_i(h), g)))           stride 2: S -> S/2
 *   f   = [mean_HW silu(film_out(norm_out(h), g)), mean_HW silu(conv_in(x))]   (B, C + C0)
 *   r   = head.fc2(silu(head.fc1(f)))                           (B)
 *   film(y, g) = y * (1 + scale) + shift, [scale, shift] = Linear(g)  (per channel)
 *
 * Why these choices: most of the rater's taste is faithfulness, i.e. "does
 * the image show what THIS prompt asks", so the prompt conditions the image
 * features at every stage (FiLM, as the UNet's time embedding does) rather
 * than only meeting them at the head: the network can look for red where
 * the prompt says red. The two coordinate channels let pooled features
 * carry where things are (centring, relations). GroupNorm makes features
 * blind to an image's overall contrast, which the rater likes, so the head
 * also sees the pooled conv_in features, taken before any normalisation.
 * Word trigrams bind a colour
 * to its shape ("red circle") and a shape to its side of the relation
 * ("circle left of"), which a bag of words cannot. The word table is the
 * model's own over the tokenizer's vocabulary, so it trains on the rater's
 * pairs alone and needs no trained text encoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/models.h"
#include "core/config.h"
#include "models/blocks.h"
#include "models/params.h"

#define GN_EPS 1e-5f
#define CFG_MAX 100000

/* ------------------------------------------------------------------------ */
/* Config                                                                   */
/* ------------------------------------------------------------------------ */

da_reward_net_config da_reward_net_config_default(void)
{
    da_reward_net_config c = {.image_size = 32, .n_blocks = 3, .channels = {32, 32, 64, 128},
                              .groups = 8, .vocab_size = 34, .context = 24, .embed_dim = 32,
                              .text_dim = 64, .hidden = 128};
    return c;
}

da_status da_reward_net_config_check(const da_reward_net_config *c)
{
    if (c->n_blocks < 0 || c->n_blocks > DA_REWARD_NET_MAX_BLOCKS)
        return da_fail(DA_ERR_INVALID, "reward net config: n_blocks %d not in [0, %d]", c->n_blocks,
                       DA_REWARD_NET_MAX_BLOCKS);
    const int v[] = {c->image_size, c->groups, c->vocab_size, c->embed_dim, c->text_dim, c->hidden};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 1 || v[i] > CFG_MAX)
            return da_fail(DA_ERR_INVALID, "reward net config: sizes must lie in [1, %d]", CFG_MAX);
    if (c->context < 3 || c->context > CFG_MAX)
        return da_fail(DA_ERR_INVALID, "reward net config: context %d must be >= 3 (one trigram)", c->context);
    if (c->image_size % (1 << c->n_blocks))
        return da_fail(DA_ERR_INVALID, "reward net config: image_size %d not divisible by 2^%d", c->image_size,
                       c->n_blocks);
    for (int i = 0; i <= c->n_blocks; i++)
        if (c->channels[i] < 1 || c->channels[i] > CFG_MAX || c->channels[i] % c->groups)
            return da_fail(DA_ERR_INVALID,
                           "reward net config: channels[%d] = %d must be in [1, %d] and divisible by groups %d",
                           i, c->channels[i], CFG_MAX, c->groups);
    return DA_OK;
}

/* one table drives the JSON reader and writer, in the order keys are written;
 * "channels" is a list of n_blocks + 1 integers */
static int reward_net_cfg_fields(void *cfg, da_cfg_list *ch, da_cfg_field *f)
{
    da_reward_net_config *c = cfg;
    *ch = (da_cfg_list){c->channels, &c->n_blocks, 1};
    da_cfg_field t[] = {
        {"image_size", DA_CFG_INT, 1, &c->image_size},
        {"channels", DA_CFG_INT_LIST, DA_REWARD_NET_MAX_BLOCKS + 1, ch},
        {"groups", DA_CFG_INT, 1, &c->groups},
        {"vocab_size", DA_CFG_INT, 1, &c->vocab_size},
        {"context", DA_CFG_INT, 1, &c->context},
        {"embed_dim", DA_CFG_INT, 1, &c->embed_dim},
        {"text_dim", DA_CFG_INT, 1, &c->text_dim},
        {"hidden", DA_CFG_INT, 1, &c->hidden},
    };
    memcpy(f, t, sizeof t);
    return (int)(sizeof t / sizeof t[0]);
}

static da_status reward_net_cfg_check_any(const void *c) { return da_reward_net_config_check(c); }

/* Strict: exactly the known keys, each once, integers in [0, CFG_MAX];
 * "channels" holds 1 .. DA_REWARD_NET_MAX_BLOCKS + 1 integers (n_blocks =
 * its length - 1). */
static const da_cfg_type REWARD_NET_CFG = {sizeof(da_reward_net_config), reward_net_cfg_fields,
                                           reward_net_cfg_check_any, CFG_MAX};

/* temp file, fsync, rename: a crash never leaves a half-written config */
da_status da_reward_net_config_save(const da_reward_net_config *cfg, const char *path)
{
    da_status s = da_reward_net_config_check(cfg);
    return s ? s : da_cfg_save(&REWARD_NET_CFG, cfg, path);
}

da_status da_reward_net_config_load(da_reward_net_config *cfg, const char *path)
{
    return da_cfg_load(&REWARD_NET_CFG, cfg, path);
}

/* ------------------------------------------------------------------------ */
/* Create / init / load / save                                              */
/* ------------------------------------------------------------------------ */

da_reward_net *da_reward_net_create(const da_reward_net_config *cfg, int trainable)
{
    if (da_reward_net_config_check(cfg)) return NULL;
    da_reward_net *m = calloc(1, sizeof *m);
    if (!m) { da_fail(DA_ERR_NOMEM, "out of memory"); return NULL; }
    m->cfg = *cfg;
    da_params *p = &m->params;
    da_params_init(p);
    const int *ch = cfg->channels, C = ch[cfg->n_blocks];
    int emb[2] = {cfg->vocab_size, cfg->embed_dim};
    da_params_add(p, "text.embedding.weight", 2, emb);
    da_blk_add_linear(p, "text.fc", 3 * cfg->embed_dim, cfg->text_dim, 1);
    da_blk_add_tower(p, "visual", DA_REWARD_NET_IN_CHANNELS, ch, cfg->n_blocks, cfg->text_dim);
    da_blk_add_linear(p, "head.fc1", C + ch[0], cfg->hidden, 1);  /* [f, pooled conv_in features] */
    da_blk_add_linear(p, "head.fc2", cfg->hidden, 1, 1);
    if (da_params_alloc(p, trainable)) {
        da_reward_net_free(m);
        return NULL;
    }
    return m;
}

/* PyTorch's defaults throughout (models/init.c): the word embedding N(0, 1)
 * (nn.Embedding's: the trigram layer then starts with O(1) inputs);
 * GroupNorm weight 1, bias 0; conv and Linear U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)), fan_in = I*k*k of the weight. */
void da_reward_net_init(da_reward_net *m, da_rng *rng)
{
    const da_init_rule own[] = {{"embedding.weight", DA_INIT_NORMAL, 1.0f}};
    da_init_params(&m->params, rng, own, 1);
}

da_status da_reward_net_load(da_reward_net *m, const char *path) { return da_params_load(&m->params, path); }

da_status da_reward_net_save(const da_reward_net *m, const char *path)
{
    return da_params_save(&m->params, path, NULL, 0);
}

void da_reward_net_free(da_reward_net *m)
{
    if (!m) return;
    da_params_free(&m->params);
    free(m);
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */
/* ------------------------------------------------------------------------ */

/* (B, 2, S, S) constant: x then y of each pixel centre, in [-1, 1] */
static da_tensor *coords(da_tape *t, int B, int S)
{
    int shape[4] = {B, 2, S, S};
    da_tensor *c = da_tensor_new(t, 4, shape, 0);
    size_t SS = (size_t)S * S;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                float *px = c->data + (size_t)b * 2 * SS + (size_t)i * S + j;
                px[0] = (2.0f * ((float)j + 0.5f)) / (float)S - 1.0f;
                px[SS] = (2.0f * ((float)i + 0.5f)) / (float)S - 1.0f;
            }
    return c;
}

/* images (B, 3, S, S) in [0, 1], g (B, D) -> [f, mean_HW silu(conv_in(x))] (B, C + C0) */
static da_tensor *visual(da_tape *t, const da_reward_net *m, da_tensor *images, da_tensor *g)
{
    const da_reward_net_config *c = &m->cfg;
    int B = images->shape[0];
    da_tensor *x = da_add_scalar(t, da_scale(t, images, 2.0f), -1.0f);  /* [0, 1] -> [-1, 1] */
    x = da_concat(t, x, coords(t, B, c->image_size), 1);               /* (B, 5, S, S) */
    da_blk_cfg bc = {.groups = c->groups, .gn_eps = GN_EPS};
    da_tensor *raw;  /* mean_HW silu(conv_in(x)): contrast, how much is object */
    da_tensor *f = da_blk_tower(t, &m->params, "visual", x, g, c->n_blocks, &bc, &raw);  /* (B, C) */
    return da_concat(t, f, raw, 1);  /* (B, C + C0) */
}

/* ids, keep (B, T) -> g (B, text_dim): mean over the trigrams that end on a
 * real token (keep[t + 2]) of silu(fc([e_t, e_t+1, e_t+2])); a row with no
 * trigram (fewer than 3 real tokens) gives zeros */
static da_tensor *text(da_tape *t, const da_reward_net *m, const int *ids, const uint8_t *keep, int B, int T)
{
    const da_params *p = &m->params;
    int N = T - 2;
    da_tensor *e = da_embedding(t, da_params_leaf(t, p, "text.embedding.weight"), ids, B, T);  /* (B, T, E) */
    da_tensor *tri = da_concat(t, da_concat(t, da_narrow(t, e, 1, 0, N), da_narrow(t, e, 1, 1, N), 2),
                               da_narrow(t, e, 1, 2, N), 2);                                   /* (B, N, 3E) */
    da_tensor *h = da_silu(t, da_linear(t, tri, da_params_leaf(t, p, "text.fc.weight"),
                                        da_params_leaf(t, p, "text.fc.bias")));               /* (B, N, D) */
    /* masked mean as a batched matmul: w (B, 1, N) @ h (B, N, D) */
    int wshape[3] = {B, 1, N};
    da_tensor *w = da_tensor_new(t, 3, wshape, 0);
    for (int b = 0; b < B; b++) {
        int n = 0;
        for (int i = 0; i < N; i++) n += keep[(size_t)b * T + i + 2] != 0;
        for (int i = 0; i < N; i++)
            w->data[(size_t)b * N + i] = keep[(size_t)b * T + i + 2] ? 1.0f / (float)n : 0.0f;
    }
    int gshape[2] = {B, m->cfg.text_dim};
    return da_reshape(t, da_matmul(t, w, h), 2, gshape);
}

da_tensor *da_reward_net_forward(da_tape *t, const da_reward_net *m, da_tensor *images, const int *ids,
                                 const uint8_t *keep, int T)
{
    const da_reward_net_config *c = &m->cfg;
    if (!images || images->ndim != 4 || images->shape[0] < 1 || images->shape[1] != 3 ||
        images->shape[2] != c->image_size || images->shape[3] != c->image_size) {
        da_fail(DA_ERR_INVALID, "reward net: images must be (B, 3, %d, %d)", c->image_size, c->image_size);
        return NULL;
    }
    int B = images->shape[0];
    if (!ids || !keep || T < 3 || T > c->context) {
        da_fail(DA_ERR_INVALID, "reward net: %d tokens per row, need 3 .. %d", T, c->context);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size) {
            da_fail(DA_ERR_INVALID, "reward net: token id %d outside [0, %d)", ids[i], c->vocab_size);
            return NULL;
        }
    const da_params *p = &m->params;
    da_tensor *g = text(t, m, ids, keep, B, T);
    da_tensor *f = visual(t, m, images, g);
    da_tensor *h = da_silu(t, da_linear(t, f, da_params_leaf(t, p, "head.fc1.weight"),
                                        da_params_leaf(t, p, "head.fc1.bias")));
    h = da_linear(t, h, da_params_leaf(t, p, "head.fc2.weight"), da_params_leaf(t, p, "head.fc2.bias"));
    int shape[1] = {B};
    return da_reshape(t, h, 1, shape);  /* (B, 1) -> (B) */
}

/* ------------------------------------------------------------------------ */
/* Bradley-Terry loss                                                       */
/* ------------------------------------------------------------------------ */

/* r_w, r_l (N) -> mean_i -log sigmoid(r_w[i] - r_l[i]); NULL + da_last_error()
 * when the two differ in shape */
da_tensor *da_bt_loss(da_tape *t, da_tensor *r_w, da_tensor *r_l)
{
    if (!r_w || !r_l || r_w->size != r_l->size || r_w->ndim != r_l->ndim) {
        da_fail(DA_ERR_INVALID, "bt loss: winners' and losers' rewards must have one shape");
        return NULL;
    }
    return da_scale(t, da_mean(t, da_log_sigmoid(t, da_sub(t, r_w, r_l)), 0), -1.0f);
}
