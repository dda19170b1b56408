/* The PromptLoop refiner's autoregressive generation (docs/promptloop.md,
 * "Generation"), with a key/value cache.
 *
 * Re-running the teacher-forced forward (refiner.c) for every new token
 * recomputes the whole observation each time (~18 GFLOP for B = 8). Here
 *   - each row's observation (latent patches, time, query, prompt) and BOS,
 *     n0 = P + 2 + 2M slots, go through every layer once (the first pass,
 *     row by row, GEMMs through da_gemm), and each layer keeps the row's keys
 *     and values (L, D);
 *   - then every new token is a single slot (a step): ln1, q/k/v (k and v
 *     appended to the row's cache), attention over the cached keys with the
 *     same key padding, out_proj, residual, ln2, MLP, residual; final_ln and
 *     lm_head for that slot only. A step runs the unfinished rows of a group
 *     together, so that each weight is read once per step for all of them.
 * About 0.9 GFLOP for B = 8 instead of 18; the first passes are most of it.
 *
 * The layer is da_blk_decoder_layer's over plain floats, with the same
 * forward kernels (da_layernorm_forward, da_linear_forward,
 * da_attention_forward, da_gelu_forward); a step's Linears are matmat
 * below, whose every element is the portable GEMM's. So with DA_GEMM=portable
 * the logits are bit-identical to the teacher-forced ones; with OpenBLAS
 * they agree within rounding (OpenBLAS sums a GEMM of 66 rows in another
 * order than one of 89).
 *
 * Determinism: every piece of a row is computed from that row alone, by
 * kernels whose bits for the row depend on the config and the slot only
 * (never on B, the row's position, its group or the thread count), and the
 * row draws from its own generator. The token choice uses da_expf and
 * da_logf, whose bits are the same on x86-64 and aarch64. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/models.h"
#include "models/blocks.h"
#include "models/refiner_internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------------ */
/* The weights, looked up once per call                                     */
/* ------------------------------------------------------------------------ */

/* One layer's weights as the model holds them (Linear weights (out, in),
 * for the first pass's GEMMs), and its Linear weights transposed (in, out),
 * for the steps' matmat. */
typedef struct layer_w {
    const float *ln1_w, *ln1_b, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b;
    const float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    const float *q_t, *k_t, *v_t, *out_t, *fc1_t, *fc2_t;
} layer_w;

typedef struct gen_model {
    const da_refiner_config *c;
    int P, M, D, Hm, V, L;   /* patches, max_tokens, d_model, MLP width, vocabulary, slots */
    int n0;                  /* slots of the first pass: the observation and output token 0 */
    const float *patch_w, *patch_b, *t0_w, *t0_b, *t2_w, *t2_b;
    const float *tok, *pos, *seg;   /* token (V, D), position (L, D), segment (5, D) tables */
    const float *fln_w, *fln_b, *head, *head_t;
    layer_w *layers;                /* (n_layers), malloc'd */
    float *transposed;              /* the *_t weights, malloc'd */
} gen_model;

static const float *param(const da_params *p, const char *name)
{
    const float *w = da_params_get(p, name);
    assert(w);   /* da_refiner_create registered every name used here */
    return w;
}

static const float *layer_param(const da_params *p, int l, const char *leaf)
{
    char name[96];
    snprintf(name, sizeof name, "layers.%d.%s", l, leaf);
    return param(p, name);
}

static void layer_weights(layer_w *w, const da_params *p, int l)
{
    w->ln1_w = layer_param(p, l, "ln1.weight"), w->ln1_b = layer_param(p, l, "ln1.bias");
    w->q_w = layer_param(p, l, "attn.q_proj.weight"), w->q_b = layer_param(p, l, "attn.q_proj.bias");
    w->k_w = layer_param(p, l, "attn.k_proj.weight"), w->k_b = layer_param(p, l, "attn.k_proj.bias");
    w->v_w = layer_param(p, l, "attn.v_proj.weight"), w->v_b = layer_param(p, l, "attn.v_proj.bias");
    w->out_w = layer_param(p, l, "attn.out_proj.weight"), w->out_b = layer_param(p, l, "attn.out_proj.bias");
    w->ln2_w = layer_param(p, l, "ln2.weight"), w->ln2_b = layer_param(p, l, "ln2.bias");
    w->fc1_w = layer_param(p, l, "mlp.fc1.weight"), w->fc1_b = layer_param(p, l, "mlp.fc1.bias");
    w->fc2_w = layer_param(p, l, "mlp.fc2.weight"), w->fc2_b = layer_param(p, l, "mlp.fc2.bias");
}

/* t (C, OC) = w (OC, C)^T, in tiles so that both sides stay in cache */
static void transpose(float *t, const float *w, int OC, int C)
{
    enum { TILE = 32 };
    for (int o0 = 0; o0 < OC; o0 += TILE)
        for (int c0 = 0; c0 < C; c0 += TILE)
            for (int o = o0; o < OC && o < o0 + TILE; o++)
                for (int c = c0; c < C && c < c0 + TILE; c++) t[(size_t)c * OC + o] = w[(size_t)o * C + c];
}

/* w (OC, C) transposed at *at of the block; returns it and moves *at on */
static const float *take_transposed(float **at, const float *w, int OC, int C)
{
    float *t = *at;
    transpose(t, w, OC, C);
    *at += (size_t)OC * C;
    return t;
}

/* the steps' transposed weights: 4 D x D, 2 D x Hm per layer, and lm_head */
static da_status transpose_weights(gen_model *g)
{
    int D = g->D, Hm = g->Hm, n_layers = g->c->n_layers;
    size_t n = (size_t)n_layers * (4 * (size_t)D * D + 2 * (size_t)D * Hm) + (size_t)g->V * D;
    g->transposed = malloc(n * sizeof(float));
    if (!g->transposed) return da_fail(DA_ERR_NOMEM, "refiner generate: out of memory");
    float *at = g->transposed;
    for (int l = 0; l < n_layers; l++) {
        layer_w *w = &g->layers[l];
        w->q_t = take_transposed(&at, w->q_w, D, D), w->k_t = take_transposed(&at, w->k_w, D, D);
        w->v_t = take_transposed(&at, w->v_w, D, D), w->out_t = take_transposed(&at, w->out_w, D, D);
        w->fc1_t = take_transposed(&at, w->fc1_w, Hm, D), w->fc2_t = take_transposed(&at, w->fc2_w, D, Hm);
    }
    g->head_t = take_transposed(&at, g->head, g->V, D);
    return DA_OK;
}

static void gen_model_free(gen_model *g)
{
    free(g->layers);
    free(g->transposed);
}

static da_status gen_model_init(gen_model *g, const da_refiner *m)
{
    const da_refiner_config *c = &m->cfg;
    const da_params *p = &m->params;
    g->c = c;
    g->P = da_refiner_n_patches(c), g->M = c->max_tokens, g->D = c->d_model;
    g->Hm = c->mlp_ratio * c->d_model, g->V = c->vocab_size;
    g->L = da_refiner_seq_len(c, c->max_tokens), g->n0 = da_refiner_seq_len(c, 1);
    g->patch_w = param(p, "patch_embed.weight"), g->patch_b = param(p, "patch_embed.bias");
    g->t0_w = param(p, "time_mlp.0.weight"), g->t0_b = param(p, "time_mlp.0.bias");
    g->t2_w = param(p, "time_mlp.2.weight"), g->t2_b = param(p, "time_mlp.2.bias");
    g->tok = param(p, "token_embedding.weight"), g->pos = param(p, "position_embedding.weight");
    g->seg = param(p, "segment_embedding.weight");
    g->fln_w = param(p, "final_ln.weight"), g->fln_b = param(p, "final_ln.bias");
    g->head = param(p, "lm_head.weight");
    g->transposed = NULL;
    g->layers = malloc((size_t)(c->n_layers > 0 ? c->n_layers : 1) * sizeof *g->layers);
    if (!g->layers) return da_fail(DA_ERR_NOMEM, "refiner generate: out of memory");
    for (int l = 0; l < c->n_layers; l++) layer_weights(&g->layers[l], p, l);
    da_status s = transpose_weights(g);
    if (s) gen_model_free(g);
    return s;
}

/* ------------------------------------------------------------------------ */
/* A group's buffers: its rows' caches and the scratch of a pass            */
/* ------------------------------------------------------------------------ */

#define GROUP_MAX 32   /* rows per group: caches of 32 rows (8.7 MB at the default config) at most */

/* The rows of one group are generated together: each row's first pass
 * alone, then the steps of all its unfinished rows in lockstep (one slot
 * per row). The scratch serves the first pass (n0 slots of one row) and a
 * step (one slot of up to G rows) in turn: nr = max(n0, G) rows of it. */
typedef struct gen_work {
    int G;                       /* rows of the group, at most */
    float *k, *v;                /* (G, n_layers, L, D) cached keys and values */
    uint8_t *keep;               /* (G, L) key padding: 0 for PAD query/prompt slots */
    float *logits;               /* (G, V) of each row's last slot passed */
    float *x, *h, *q, *o, *y;    /* (nr, D): residual stream, normed, queries, attention, projection */
    float *kn, *vn;              /* (nr, D) the new keys and values, before they go to the caches */
    float *mlp;                  /* (nr, Hm) */
    float *att;                  /* (n_heads, n0, max(n0, L)) attention probabilities */
    float *mean, *rstd;          /* (nr) layernorm statistics */
    float *col;                  /* patch_embed's im2col scratch */
    float *freq;                 /* (time_freq_dim) the sinusoid */
    float *s, *e;                /* (V) the token choice's shifted logits and their exp */
    int act[GROUP_MAX];          /* the unfinished rows of a step */
    int tok[GROUP_MAX];          /* the token each of them passes */
    float *block;                /* the one allocation behind the buffers */
} gen_work;

/* n floats at *at of base (NULL: only counting), *at moved on by a multiple
 * of 16 floats (64 bytes) */
static float *take(float *base, size_t *at, size_t n)
{
    float *p = base ? base + *at : NULL;
    *at += (n + 15) / 16 * 16;
    return p;
}

/* lays w's buffers out from base (NULL: only counting); returns the floats needed */
static size_t work_layout(gen_work *w, float *base, const gen_model *g)
{
    const da_refiner_config *c = g->c;
    size_t G = (size_t)w->G, nr = (size_t)(g->n0 > w->G ? g->n0 : w->G), nd = nr * g->D, at = 0;
    size_t cache = G * c->n_layers * g->L * g->D;
    size_t att = (size_t)c->n_heads * g->n0 * (g->n0 > g->L ? g->n0 : g->L);
    w->k = take(base, &at, cache), w->v = take(base, &at, cache);
    w->keep = (uint8_t *)take(base, &at, (G * g->L + 3) / 4);
    w->logits = take(base, &at, G * g->V);
    w->x = take(base, &at, nd), w->h = take(base, &at, nd), w->q = take(base, &at, nd);
    w->o = take(base, &at, nd), w->y = take(base, &at, nd);
    w->kn = take(base, &at, nd), w->vn = take(base, &at, nd);
    w->mlp = take(base, &at, nr * g->Hm);
    w->att = take(base, &at, att);
    w->mean = take(base, &at, nr), w->rstd = take(base, &at, nr);
    w->col = take(base, &at, da_conv2d_col_size(1, c->latent_channels, c->latent_size, c->latent_size, g->D,
                                                c->patch, c->patch, 0));
    w->freq = take(base, &at, (size_t)c->time_freq_dim);
    w->s = take(base, &at, (size_t)g->V), w->e = take(base, &at, (size_t)g->V);
    return at;
}

static da_status work_alloc(gen_work *w, const gen_model *g, int G)
{
    assert(G >= 1 && G <= GROUP_MAX);
    w->G = G;
    size_t n = work_layout(w, NULL, g);
    w->block = malloc(n * sizeof(float));
    if (!w->block) return da_fail(DA_ERR_NOMEM, "refiner generate: out of memory (%zu floats of cache)", n);
    work_layout(w, w->block, g);
    return DA_OK;
}

/* row r's cache of layer l (L, D) */
static float *cache_k(const gen_model *g, const gen_work *w, int r, int l)
{
    return w->k + ((size_t)r * g->c->n_layers + l) * g->L * g->D;
}

static float *cache_v(const gen_model *g, const gen_work *w, int r, int l)
{
    return w->v + ((size_t)r * g->c->n_layers + l) * g->L * g->D;
}

/* ------------------------------------------------------------------------ */
/* Kernels of the steps                                                     */
/* ------------------------------------------------------------------------ */

#define MV_CHUNK 16   /* outputs per vectorised step: a constant trip count GCC vectorises at -O2 */

/* out (MV_CHUNK) = the k-ordered sums x (C) @ wt[:, 0 .. MV_CHUNK), wt of
 * row stride OC. The inner loop unrolled, acc lives in registers through
 * the loop over k (GCC then vectorises across the MV_CHUNK outputs). */
static void dot_chunk(float *restrict out, const float *restrict x, const float *restrict wt, int C, int OC)
{
    float acc[MV_CHUNK] = {0};
    for (int k = 0; k < C; k++) {
        const float *w = wt + (size_t)k * OC;
        float xk = x[k];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16   /* MV_CHUNK */
#endif
        for (int i = 0; i < MV_CHUNK; i++) acc[i] += xk * w[i];
    }
    memcpy(out, acc, sizeof acc);
}

/* y (n, OC) = x (n, C) @ wt (C, OC) + bias (OC) or NULL, for n rows of one
 * slot each. Every output is the k-ordered sum ((0 + x0 wt0) + x1 wt1) +
 * ..., then + bias: the element the portable GEMM computes for
 * da_linear_forward (gemm_portable.c), so a row gets here the bits a GEMM
 * gives it with DA_GEMM=portable, on every machine, whatever the other rows.
 * (Through OpenBLAS a GEMM of a few rows packs the whole weight on every
 * call, most of a step's time.) A block of MV_CHUNK columns of wt serves
 * the n rows while it is in cache; the loop over outputs vectorises; no sum
 * is reordered. */
static void matmat(float *y, const float *x, const float *wt, const float *bias, int n, int C, int OC)
{
    int full = OC - OC % MV_CHUNK;
    for (int o = 0; o < full; o += MV_CHUNK)
        for (int r = 0; r < n; r++) dot_chunk(y + (size_t)r * OC + o, x + (size_t)r * C, wt + o, C, OC);
    for (int r = 0; r < n; r++)
        for (int o = full; o < OC; o++) {
            float acc = 0.0f;
            for (int k = 0; k < C; k++) acc += x[(size_t)r * C + k] * wt[(size_t)k * OC + o];
            y[(size_t)r * OC + o] = acc;
        }
    if (bias)
        for (int r = 0; r < n; r++)
            for (int o = 0; o < OC; o++) y[(size_t)r * OC + o] += bias[o];
}

/* ------------------------------------------------------------------------ */
/* The passes                                                               */
/* ------------------------------------------------------------------------ */

/* One row's inputs (da_refiner_forward's, row b) */
typedef struct row_in {
    const float *x0;   /* (C, S, S) */
    float t;
    const int *query, *prompt;                   /* (M) */
    const uint8_t *query_keep, *prompt_keep;     /* (M) */
} row_in;

/* What a pass runs through the layers: either the first pass of group row
 * `row` (n = n0 slots, GEMMs through da_gemm, causal attention within
 * them), or a step (n = the unfinished rows rows[0..n), one slot each, at
 * sequence slot `slot`, matmat, attention over each row's cache). */
typedef struct pass {
    int first;
    int n;
    int row;             /* first pass */
    const int *rows;     /* step */
    int slot;            /* step */
} pass;

/* y (n, OC) = x (n, C) @ w (OC, C)^T + bias, as the pass computes it */
static void pass_linear(const pass *p, float *y, const float *x, const float *w, const float *wt,
                        const float *bias, int C, int OC)
{
    if (p->first) da_linear_forward(y, x, w, bias, 1, p->n, C, OC);
    else matmat(y, x, wt, bias, p->n, C, OC);
}

/* x (n) += y (n) */
static void add_into(float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* w->kn, w->vn (n, D) into the caches of layer l; then w->o (n, D) = the
 * attention of the queries w->q over them (the key padding of each row) */
static void pass_attention(const gen_model *g, gen_work *w, const pass *p, int l)
{
    int D = g->D, H = g->c->n_heads;
    size_t row_bytes = (size_t)D * sizeof(float);
    if (p->first) {
        float *k = cache_k(g, w, p->row, l), *v = cache_v(g, w, p->row, l);
        memcpy(k, w->kn, (size_t)p->n * row_bytes);
        memcpy(v, w->vn, (size_t)p->n * row_bytes);
        da_attention_forward(w->o, w->att, w->q, k, v, w->keep + (size_t)p->row * g->L, 1, p->n, p->n, D, H, 1);
        return;
    }
    for (int i = 0; i < p->n; i++) {
        int r = p->rows[i];
        float *k = cache_k(g, w, r, l), *v = cache_v(g, w, r, l);
        memcpy(k + (size_t)p->slot * D, w->kn + (size_t)i * D, row_bytes);
        memcpy(v + (size_t)p->slot * D, w->vn + (size_t)i * D, row_bytes);
        /* the new slot is the last: it sees every cached key (the causal rule) */
        da_attention_forward(w->o + (size_t)i * D, w->att, w->q + (size_t)i * D, k, v,
                             w->keep + (size_t)r * g->L, 1, 1, p->slot + 1, D, H, 0);
    }
}

/* Layer l (da_blk_decoder_layer) over the pass's n slots, whose residual
 * stream w->x (n, D) it updates */
static void layer_forward(const gen_model *g, gen_work *w, const pass *p, int l)
{
    const layer_w *lw = &g->layers[l];
    int n = p->n, D = g->D, Hm = g->Hm;
    da_layernorm_forward(w->h, w->mean, w->rstd, w->x, lw->ln1_w, lw->ln1_b, n, D, REFINER_LN_EPS);
    pass_linear(p, w->q, w->h, lw->q_w, lw->q_t, lw->q_b, D, D);
    pass_linear(p, w->kn, w->h, lw->k_w, lw->k_t, lw->k_b, D, D);
    pass_linear(p, w->vn, w->h, lw->v_w, lw->v_t, lw->v_b, D, D);
    pass_attention(g, w, p, l);
    pass_linear(p, w->y, w->o, lw->out_w, lw->out_t, lw->out_b, D, D);
    add_into(w->x, w->y, (size_t)n * D);
    da_layernorm_forward(w->h, w->mean, w->rstd, w->x, lw->ln2_w, lw->ln2_b, n, D, REFINER_LN_EPS);
    pass_linear(p, w->mlp, w->h, lw->fc1_w, lw->fc1_t, lw->fc1_b, D, Hm);
    da_gelu_forward(w->mlp, w->mlp, (size_t)n * Hm);
    pass_linear(p, w->y, w->mlp, lw->fc2_w, lw->fc2_t, lw->fc2_b, Hm, D);
    add_into(w->x, w->y, (size_t)n * D);
}

/* final_ln and lm_head of the n rows x (n, D) into the logits of group
 * rows rows[0..n) (a weight of V x D: row by row costs nothing) */
static void head_forward(const gen_model *g, gen_work *w, const float *x, int n, const int *rows)
{
    int D = g->D, V = g->V;
    da_layernorm_forward(w->h, w->mean, w->rstd, x, g->fln_w, g->fln_b, n, D, REFINER_LN_EPS);
    for (int i = 0; i < n; i++)
        matmat(w->logits + (size_t)rows[i] * V, w->h + (size_t)i * D, g->head_t, NULL, 1, D, V);
}

/* x (D) += position_embedding[slot], then segment_embedding[its segment]:
 * refiner.c's order of additions */
static void add_position(const gen_model *g, float *x, int slot)
{
    add_into(x, g->pos + (size_t)slot * g->D, (size_t)g->D);
    add_into(x, g->seg + (size_t)da_refiner_segment(g->c, slot) * g->D, (size_t)g->D);
}

/* keep (L): latent, time and output slots visible, query and prompt slots
 * as the row's masks say (refiner.c's sequence_keep) */
static void row_keep(const gen_model *g, uint8_t *keep, const row_in *in)
{
    int P = g->P, M = g->M;
    memset(keep, 1, (size_t)g->L);
    for (int j = 0; j < M; j++) {
        keep[P + 1 + j] = in->query_keep[j] != 0;
        keep[P + 1 + M + j] = in->prompt_keep[j] != 0;
    }
}

/* w->x (n0, D) = the embeddings of the first pass's slots (refiner.c's
 * embed_sequence for one row, output token 0 = first_token) */
static void embed_prefix(const gen_model *g, gen_work *w, const row_in *in, int first_token)
{
    const da_refiner_config *c = g->c;
    int P = g->P, M = g->M, D = g->D, S = c->latent_size;
    /* patches: the Conv2d's (D, P) map, then tokens (P, D) */
    da_conv2d_forward(w->y, in->x0, g->patch_w, g->patch_b, w->col, 1, c->latent_channels, S, S, D, c->patch,
                      c->patch, 0);
    for (int p = 0; p < P; p++)
        for (int d = 0; d < D; d++) w->x[(size_t)p * D + d] = w->y[(size_t)d * P + p];
    /* time: time_mlp.2(silu(time_mlp.0(sinusoid(t)))) */
    da_timestep_embedding_forward(w->freq, &in->t, 1, c->time_freq_dim);
    da_linear_forward(w->h, w->freq, g->t0_w, g->t0_b, 1, 1, c->time_freq_dim, D);
    da_silu_forward(w->q, w->h, (size_t)D);
    da_linear_forward(w->x + (size_t)P * D, w->q, g->t2_w, g->t2_b, 1, 1, D, D);
    da_embedding_forward(w->x + (size_t)(P + 1) * D, g->tok, in->query, M, D);
    da_embedding_forward(w->x + (size_t)(P + 1 + M) * D, g->tok, in->prompt, M, D);
    da_embedding_forward(w->x + (size_t)(P + 1 + 2 * M) * D, g->tok, &first_token, 1, D);
    for (int s = 0; s < g->n0; s++) add_position(g, w->x + (size_t)s * D, s);
}

/* The first pass of group row r: its observation and output token 0
 * (slots 0 .. n0-1) fill its caches; its logits predict output token 1. */
static void first_pass(const gen_model *g, gen_work *w, int r, const row_in *in, int first_token)
{
    pass p = {.first = 1, .n = g->n0, .row = r};
    row_keep(g, w->keep + (size_t)r * g->L, in);
    embed_prefix(g, w, in, first_token);
    for (int l = 0; l < g->c->n_layers; l++) layer_forward(g, w, &p, l);
    head_forward(g, w, w->x + (size_t)(g->n0 - 1) * g->D, 1, &r);
}

/* A step: output token j >= 1 (slot n0 - 1 + j) of the n group rows
 * w->act[0..n), token w->tok[i] for row w->act[i], each over its own cache;
 * their logits predict output token j + 1. */
static void step_pass(const gen_model *g, gen_work *w, int n, int j)
{
    pass p = {.first = 0, .n = n, .rows = w->act, .slot = g->n0 - 1 + j};
    int D = g->D;
    for (int i = 0; i < n; i++) {
        float *x = w->x + (size_t)i * D;
        memcpy(x, g->tok + (size_t)w->tok[i] * D, (size_t)D * sizeof(float));
        add_position(g, x, p.slot);
    }
    for (int l = 0; l < g->c->n_layers; l++) layer_forward(g, w, &p, l);
    head_forward(g, w, w->x, n, w->act);
}

/* ------------------------------------------------------------------------ */
/* Token choice                                                             */
/* ------------------------------------------------------------------------ */

/* PAD and BOS never occur inside a prompt: the choice is over the other ids */
static int token_allowed(int id) { return id != TOK_PAD && id != TOK_BOS && id != TOK_UNK; }

int da_refiner_token_allowed(int id) { return id >= 0 && token_allowed(id); }

/* s (V) = (logits[v] - max) / temperature for the allowed ids (temperature
 * 0: logits[v] - max), -inf for the others, the max taken over the allowed
 * ids; e (V) = exp(s), 0 for the others. Returns z = the sum of e, added in
 * id order (the others' zeros change no bit). Shifting before dividing
 * keeps s finite (the max gives 0) at any temperature > 0. */
static float allowed_exp(float *s, float *e, const float *logits, int V, float temperature)
{
    float mx = -INFINITY;
    for (int v = 0; v < V; v++)
        if (token_allowed(v) && logits[v] > mx) mx = logits[v];
    for (int v = 0; v < V; v++)
        s[v] = !token_allowed(v) ? -INFINITY : temperature > 0.0f ? (logits[v] - mx) / temperature : logits[v] - mx;
    da_expf_n(e, s, (size_t)V);
    float z = 0.0f;
    for (int v = 0; v < V; v++) z += e[v];
    return z;
}

/* argmax over the allowed ids of logits (V); ties to the lower id */
static int pick_greedy(const float *logits, int V)
{
    int best = TOK_EOS;
    for (int v = 0; v < V; v++)
        if (token_allowed(v) && logits[v] > logits[best]) best = v;
    return best;
}

/* Inverse CDF over e (V): the first id whose running sum exceeds u z (an id
 * of zero mass never does). The running sums are z's own additions, so the
 * last one is z itself and u < 1 always stops inside; a NaN (from NaN
 * logits) falls through to the last id with mass. */
static int pick_sampled(const float *e, int V, float z, float u)
{
    float target = u * z, acc = 0.0f;
    int last = TOK_EOS;
    for (int v = 0; v < V; v++) {
        acc += e[v];
        if (e[v] > 0.0f) last = v;
        if (target < acc) return v;
    }
    return last;
}

/* One token from logits (V); adds its log-probability under the choice's
 * distribution (temperature 0: under softmax(logits)) to *logprob */
static int choose_token(gen_work *w, const float *logits, int V, float temperature, da_rng *rng, float *logprob)
{
    float z = allowed_exp(w->s, w->e, logits, V, temperature);
    int v;
    if (temperature > 0.0f) {
        float u;
        da_rand(rng, &u, 1);
        v = pick_sampled(w->e, V, z, u);
    } else {
        v = pick_greedy(logits, V);
    }
    *logprob += w->s[v] - da_logf(z);
    return v;
}

/* ------------------------------------------------------------------------ */
/* Groups of rows                                                           */
/* ------------------------------------------------------------------------ */

/* One call's rows, in the caller's arrays */
typedef struct gen_call {
    const float *x0, *timesteps;
    const int *query_ids, *prompt_ids;
    const uint8_t *query_keep, *prompt_keep;
    float temperature;
    da_rng *rows;       /* (B) one generator per row */
    int *out_ids;       /* (B, M) */
    float *lp;          /* (B) */
} gen_call;

static row_in row_inputs(const gen_model *g, const gen_call *k, int b)
{
    const da_refiner_config *c = g->c;
    size_t M = (size_t)g->M, img = (size_t)c->latent_channels * c->latent_size * c->latent_size;
    row_in in = {k->x0 + b * img, k->timesteps[b], k->query_ids + b * M, k->prompt_ids + b * M,
                 k->query_keep + b * M, k->prompt_keep + b * M};
    return in;
}

/* Rows b0 .. b0+G-1 of the call (group rows 0 .. G-1): out = BOS t1 .. EOS
 * PAD..., slot j from the logits of slot j - 1; the last slot is EOS, forced
 * (it needs no logits and adds no log-prob). lp = the sum over the chosen
 * tokens' log-probs. Each row's bits are its own: the first passes run row
 * by row, the steps per row (matmat, attention, layernorm, choice). */
static void generate_group(const gen_model *g, gen_work *w, const gen_call *k, int b0, int G)
{
    int M = g->M, V = g->V, n = G;
    for (int r = 0; r < G; r++) {
        int *out = k->out_ids + (size_t)(b0 + r) * M;
        for (int j = 0; j < M; j++) out[j] = j == 0 ? TOK_BOS : TOK_PAD;
        k->lp[b0 + r] = 0.0f;
        w->act[r] = r;
    }
    for (int j = 1; j < M - 1 && n > 0; j++) {
        if (j == 1) {
            for (int r = 0; r < G; r++) {
                row_in in = row_inputs(g, k, b0 + r);
                first_pass(g, w, r, &in, TOK_BOS);
            }
        } else {
            step_pass(g, w, n, j - 1);
        }
        int still = 0;
        for (int i = 0; i < n; i++) {
            int r = w->act[i], b = b0 + r;
            int v = choose_token(w, w->logits + (size_t)r * V, V, k->temperature, &k->rows[b], &k->lp[b]);
            k->out_ids[(size_t)b * M + j] = v;
            if (v != TOK_EOS) w->act[still] = r, w->tok[still++] = v;
        }
        n = still;
    }
    for (int i = 0; i < n; i++) k->out_ids[(size_t)(b0 + w->act[i]) * M + M - 1] = TOK_EOS;
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static void free_works(gen_work *works, int n)
{
    if (!works) return;
    for (int i = 0; i < n; i++) free(works[i].block);
    free(works);
}

/* works (n) allocated for groups of G rows; NULL (and a message) on failure */
static gen_work *alloc_works(const gen_model *g, int n, int G)
{
    gen_work *works = calloc((size_t)n, sizeof *works);
    if (!works) {
        da_fail(DA_ERR_NOMEM, "refiner generate: out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (work_alloc(&works[i], g, G)) {
            free_works(works, n);
            return NULL;
        }
    return works;
}

static da_status check_generate(const da_refiner *m, float temperature, const da_rng *rng, const int *out_ids)
{
    if (!m || !rng || !out_ids) return da_fail(DA_ERR_INVALID, "refiner generate: NULL model, generator or output");
    if (!(temperature >= 0.0f) || !isfinite(temperature))
        return da_fail(DA_ERR_INVALID, "refiner generate: temperature %g must be finite and >= 0",
                       (double)temperature);
    return DA_OK;
}

/* The rows of the call in groups of G, the groups shared among nw threads,
 * each with its own buffers w[thread]. A row's bits do not depend on its
 * group, so neither on B nor on the thread count. With one group the call
 * runs outside any parallel region, so that da_gemm may split the first
 * passes' GEMMs among threads (bits unchanged: its pieces depend on the
 * shape only). */
static void generate_groups(const gen_model *g, gen_work *works, int nw, const gen_call *k, int B, int G)
{
    int n_groups = (B + G - 1) / G;
    (void)nw;   /* read by the pragma alone: unused without OpenMP */
    if (n_groups == 1) {
        generate_group(g, &works[0], k, 0, B);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nw)
    for (int q = 0; q < n_groups; q++) {
        int b0 = q * G;
        generate_group(g, &works[thread_id()], k, b0, B - b0 < G ? B - b0 : G);
    }
}

da_status da_refiner_generate(const da_refiner *m, const float *x0, const float *timesteps,
                              const int *query_ids, const uint8_t *query_keep, const int *prompt_ids,
                              const uint8_t *prompt_keep, int B, float temperature, da_rng *rng,
                              int *out_ids, float *logprobs)
{
    da_status s = check_generate(m, temperature, rng, out_ids);
    if (s) return s;
    s = da_refiner_check_inputs(&m->cfg, x0, timesteps, query_ids, query_keep, prompt_ids, prompt_keep, B);
    if (s) return s;
    /* groups: as many as threads (each reads the weights once per step for
     * all its rows), of GROUP_MAX rows at most */
    int nth = da_get_threads() < B ? da_get_threads() : B;
    int G = (B + nth - 1) / nth < GROUP_MAX ? (B + nth - 1) / nth : GROUP_MAX;
    int n_groups = (B + G - 1) / G, nw = nth < n_groups ? nth : n_groups;
    gen_model g;
    if (gen_model_init(&g, m)) return DA_ERR_NOMEM;
    gen_work *works = alloc_works(&g, nw, G);
    da_rng *rows = malloc((size_t)B * sizeof *rows);
    float *lp = malloc((size_t)B * sizeof *lp);
    if (!works || !rows || !lp) {
        free_works(works, nw); free(rows); free(lp); gen_model_free(&g);
        return da_fail(DA_ERR_NOMEM, "refiner generate: out of memory");
    }
    /* one seed per row, drawn in row order before any row starts */
    for (int b = 0; b < B; b++) da_rng_seed(&rows[b], da_rng_u64(rng));
    gen_call k = {x0, timesteps, query_ids, prompt_ids, query_keep, prompt_keep, temperature, rows, out_ids, lp};
    generate_groups(&g, works, nw, &k, B, G);
    if (logprobs) memcpy(logprobs, lp, (size_t)B * sizeof(float));
    free_works(works, nw); free(rows); free(lp); gen_model_free(&g);
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* Test hook                                                                */
/* ------------------------------------------------------------------------ */

da_status da_refiner_cached_logits(const da_refiner *m, const float *x0, float timestep, const int *query_ids,
                                   const uint8_t *query_keep, const int *prompt_ids, const uint8_t *prompt_keep,
                                   const int *out_ids, int T_out, float *logits)
{
    if (!m || !out_ids || !logits) return da_fail(DA_ERR_INVALID, "refiner cached logits: NULL argument");
    const da_refiner_config *c = &m->cfg;
    da_status s = da_refiner_check_inputs(c, x0, &timestep, query_ids, query_keep, prompt_ids, prompt_keep, 1);
    if (s) return s;
    if (T_out < 1 || T_out > c->max_tokens)
        return da_fail(DA_ERR_INVALID, "refiner cached logits: T_out %d not in [1, %d]", T_out, c->max_tokens);
    for (int j = 0; j < T_out; j++)
        if (out_ids[j] < 0 || out_ids[j] >= c->vocab_size)
            return da_fail(DA_ERR_INVALID, "refiner cached logits: output token id %d not in [0, %d)", out_ids[j],
                           c->vocab_size);
    gen_model g;
    if (gen_model_init(&g, m)) return DA_ERR_NOMEM;
    gen_work w;
    if (work_alloc(&w, &g, 1)) {
        gen_model_free(&g);
        return DA_ERR_NOMEM;
    }
    row_in in = {x0, timestep, query_ids, prompt_ids, query_keep, prompt_keep};
    for (int j = 0; j < T_out; j++) {
        if (j == 0) {
            first_pass(&g, &w, 0, &in, out_ids[0]);
        } else {
            w.act[0] = 0, w.tok[0] = out_ids[j];
            step_pass(&g, &w, 1, j);
        }
        memcpy(logits + (size_t)j * g.V, w.logits, (size_t)g.V * sizeof(float));
    }
    free(w.block);
    gen_model_free(&g);
    return DA_OK;
}
