/* UNet and its blocks: the sinusoidal timestep embedding, finite differences
 * of a ResBlock with time embedding and of a SpatialTransformer (every
 * parameter included), PyTorch parity (output and the gradients of every
 * parameter, x_t and the context), padding invariance, thread determinism
 * and shapes of the default config and unet-b, weights and config files. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/blocks.h"

/* ---- shared helpers --------------------------------------------------- */

/* ---- timestep embedding -------------------------------------------------- */

/* dim 4: frequencies 1 and exp(-ln(1e4) / 2) = 0.01; [cos | sin] halves */
static void test_timestep_embedding(void **state)
{
    (void)state;
    float ts[2] = {0.0f, 10.0f}, out[8];
    da_timestep_embedding_forward(out, ts, 2, 4);
    float want[8] = {1, 1, 0, 0, cosf(10.0f), cosf(0.1f), sinf(10.0f), sinf(0.1f)};
    /* f32 rounding of the frequency 0.01 and of t * f: a few ulp */
    tu_assert_close("timestep embedding dim 4", out, want, 8, 1e-6, 0.0);
    /* dim 64 at t = 999: every entry in [-1, 1], cos^2 + sin^2 = 1 */
    float big[64], t999 = 999.0f;
    da_timestep_embedding_forward(big, &t999, 1, 64);
    for (int i = 0; i < 32; i++)
        assert_true(fabsf(big[i] * big[i] + big[32 + i] * big[32 + i] - 1.0f) < 1e-6f);
    assert_true(big[0] == (float)cos(999.0));   /* frequency 1 exactly */
}

/* ---- blocks by finite differences ---------------------------------------- */

/* The block's parameters enter the case as one flat input: the table is
 * pointed at that buffer on each run, so finite differences cover every
 * parameter. */
typedef struct block_ctx {
    da_params p;          /* table only; data/grad borrowed from the case */
    da_blk_cfg bc;
    const uint8_t *keep;
} block_ctx;

static void borrow_params(block_ctx *b, da_tensor *flat)
{
    assert_int_equal(flat->size, b->p.total);
    b->p.data = flat->data;
    b->p.grad = flat->grad;
}

static void release_params(block_ctx *b)
{
    b->p.data = NULL;
    b->p.grad = NULL;
    da_params_free(&b->p);
}

/* norm scales near 1, so no block is dominated by tiny gammas */
static void shift_norm_weights(const da_params *p, float *flat)
{
    for (int e = 0; e < p->n; e++) {
        const char *n = p->names[e];
        if (p->ndim[e] == 1 && strstr(n, ".weight") && (strstr(n, "norm") || strstr(n, ".ln")))
            for (int i = 0; i < p->shape[e][0]; i++) flat[p->offset[e] + i] += 1.0f;
    }
}

/* in: x (2, 4, 3, 3), temb_act (2, 5), params */
static da_tensor *build_resblock_temb(da_tape *t, da_tensor **in, void *ctx)
{
    block_ctx *b = ctx;
    borrow_params(b, in[2]);
    return da_blk_resblock(t, &b->p, "res", in[0], in[1], &b->bc);
}

/* ResBlock 4 -> 4 (identity skip) with time embedding 5 -> 4, 2 groups.
 * GroupNorm curves the map: eps 1e-2 balances truncation error against the
 * f32 rounding of the loss (~1e-7 |L| / eps); measured worst |err| 7e-4 on
 * a gradient of 5.9 (1.1e-4 relative). Tolerance 1e-3 absolute + 1e-3
 * relative; a wrong term gives errors ~1e-1. */
static void test_resblock_temb_gradcheck(void **state)
{
    (void)state;
    block_ctx b = {.bc = {.groups = 2, .gn_eps = 1e-5f}};
    da_params_init(&b.p);
    da_blk_add_resblock(&b.p, "res", 4, 4, 5);
    assert_true(da_params_find(&b.p, "res.time_proj.weight") >= 0);
    assert_true(da_params_find(&b.p, "res.nin_shortcut.weight") < 0);
    tu_case c = {.n_in = 3, .ndim = {4, 2, 1}, .shape = {{2, 4, 3, 3}, {2, 5}, {(int)b.p.total}},
                 .needs_grad = {1, 1, 1}};
    c.data[0] = tu_alloc_fill(72, 21u, -1.0f, 1.0f);
    c.data[1] = tu_alloc_fill(10, 22u, -1.0f, 1.0f);
    c.data[2] = tu_alloc_fill(b.p.total, 23u, -0.4f, 0.4f);
    shift_norm_weights(&b.p, c.data[2]);
    tu_gradcheck("resblock with temb", build_resblock_temb, &b, &c, 1e-2, 1e-3, 1e-3);
    tu_check_threads("resblock with temb", build_resblock_temb, &b, &c);
    for (int i = 0; i < 3; i++) free(c.data[i]);
    release_params(&b);
}

/* in: x (2, 4, 2, 3), context (2, 3, 5), params */
static da_tensor *build_transformer(da_tape *t, da_tensor **in, void *ctx)
{
    block_ctx *b = ctx;
    borrow_params(b, in[2]);
    return da_blk_transformer(t, &b->p, "tf", in[0], in[1], b->keep, NULL, &b->bc);
}

/* SpatialTransformer C = 4, 2 heads, 2 groups, context (2, 3, 5) with one
 * padded token in row 0 (its gradient must be exactly 0). Softmax, GELU and
 * four norms curve the map more than a ResBlock: with eps 1e-2 truncation
 * alone reached 2.8e-3, so eps 3e-3, where every error is below
 * 2e-4 + 2e-4 |want| (measured). Tolerance 1e-3 absolute + 1e-3 relative. */
static void test_transformer_gradcheck(void **state)
{
    (void)state;
    static const uint8_t keep[6] = {1, 0, 1, 1, 1, 1};
    block_ctx b = {.bc = {.groups = 2, .gn_eps = 1e-5f, .ln_eps = 1e-5f, .n_heads = 2}, .keep = keep};
    da_params_init(&b.p);
    da_blk_add_transformer(&b.p, "tf", 4, 5);
    tu_case c = {.n_in = 3, .ndim = {4, 3, 1}, .shape = {{2, 4, 2, 3}, {2, 3, 5}, {(int)b.p.total}},
                 .needs_grad = {1, 1, 1}};
    c.data[0] = tu_alloc_fill(48, 31u, -1.0f, 1.0f);
    c.data[1] = tu_alloc_fill(30, 32u, -1.0f, 1.0f);
    c.data[2] = tu_alloc_fill(b.p.total, 33u, -0.5f, 0.5f);
    shift_norm_weights(&b.p, c.data[2]);
    tu_gradcheck("spatial transformer", build_transformer, &b, &c, 3e-3, 1e-3, 1e-3);
    tu_check_threads("spatial transformer", build_transformer, &b, &c);
    tu_result r = tu_run(build_transformer, &b, &c, NULL);
    for (int j = 0; j < 5; j++) assert_true(r.grad[1][1 * 5 + j] == 0.0f);  /* padded token */
    tu_result_free(&r);
    for (int i = 0; i < 3; i++) free(c.data[i]);
    release_params(&b);
}

/* ---- parity with PyTorch ------------------------------------------------ */

/* the reduced config of tests/oracle/model_unet.py */
static da_unet_config oracle_config(void)
{
    da_unet_config c = da_unet_config_default();
    c.ch[0] = 8;
    c.ch[1] = 16;
    c.groups = 4;
    c.context_dim = 16;
    c.time_freq_dim = 16;
    c.time_dim = 32;
    return c;
}

/* Forward and the gradient of sum(eps * R) w.r.t. every parameter, x_t and
 * the context. Tolerance 1e-4 * max|ref| per tensor: f32 against f32 with
 * different GEMM/reduction orders through ~40 layers, softmax and norms;
 * measured worst 4.6e-6 (a gradient). A wrong op, name,
 * layout or mask gives errors of order 1e-1 and above. */
static void test_unet_vs_torch(void **state)
{
    (void)state;
    da_unet_config cfg = oracle_config();
    da_unet *m = da_unet_create(&cfg, 1);
    assert_non_null(m);
    assert_int_equal(da_unet_load(m, "tests/oracle/model_unet_weights.safetensors"), DA_OK);
    da_safetensors *st = tu_oracle("model_unet");
    const size_t nx = 2 * 4 * 8 * 8, nc = 2 * 8 * 16;
    float *x = tu_ref(st, "x", nx), *ts = tu_ref(st, "t", 2), *ctx = tu_ref(st, "context", nc);
    float *keepf = tu_ref(st, "keep", 16), *dout = tu_ref(st, "dout", nx);
    uint8_t keep[16];
    int n_pad = 0;
    for (int i = 0; i < 16; i++) {
        keep[i] = keepf[i] != 0.0f;
        n_pad += !keep[i];
    }
    assert_int_equal(n_pad, 4);   /* the case really has padding */
    float *gx = calloc(nx, sizeof(float)), *gc = calloc(nc, sizeof(float));
    da_tape t;
    da_tape_init(&t, 1 << 20);
    int xs[4] = {2, 4, 8, 8}, cs[3] = {2, 8, 16};
    da_tensor *out = da_unet_forward(&t, m, da_leaf(&t, x, gx, 4, xs), ts, da_leaf(&t, ctx, gc, 3, cs), keep);
    for (int d = 0; d < 4; d++) assert_int_equal(out->shape[d], xs[d]);
    da_tape_backward_from(&t, out, dout);

    const double rel = 1e-4;
    tu_check_scaled(st, "out", out->data, nx, rel, 0.0);
    tu_check_scaled(st, "grad.x", gx, nx, rel, 0.0);
    tu_check_scaled(st, "grad.context", gc, nc, rel, 0.0);
    for (int i = 0; i < 16; i++)
        if (!keep[i])
            for (int j = 0; j < 16; j++) assert_true(gc[i * 16 + j] == 0.0f);
    /* every parameter gradient: |err| <= rel * max|ref| of that tensor (no floor);
     * fails on the worst tensor */
    tu_compare_params(st, "grad.", &m->params, rel, 0.0);

    da_tape_free(&t);
    free(x); free(ts); free(ctx); free(keepf); free(dout); free(gx); free(gc);
    da_st_close(st);
    da_unet_free(m);
}

/* ---- default config and unet-b ----------------------------------------- */

typedef struct unet_inputs {
    int B, T;
    float *x, *ts, *ctx;
    uint8_t *keep;
} unet_inputs;

static unet_inputs make_inputs(const da_unet_config *c, int B, int T, uint32_t seed)
{
    unet_inputs in = {.B = B, .T = T};
    in.x = tu_alloc_fill((size_t)B * c->in_channels * 64, seed, -2.0f, 2.0f);
    in.ctx = tu_alloc_fill((size_t)B * T * c->context_dim, seed + 1, -1.0f, 1.0f);
    in.ts = malloc((size_t)B * sizeof(float));
    in.keep = malloc((size_t)B * T);
    for (int b = 0; b < B; b++) {
        in.ts[b] = (float)((b * 397 + 13) % 1000);
        for (int j = 0; j < T; j++) in.keep[b * T + j] = j < T - 3 * b - 2;  /* some padding per row */
    }
    return in;
}

static void free_inputs(unet_inputs *in)
{
    free(in->x); free(in->ts); free(in->ctx); free(in->keep);
}

/* forward (+ backward of sum(eps * fixed R) when the model is trainable);
 * returns eps followed by all parameter gradients (malloc'd) */
static float *unet_step(da_unet *m, const unet_inputs *in, size_t *n_out)
{
    const da_unet_config *c = &m->cfg;
    if (m->params.grad) da_params_zero_grad(&m->params);
    da_tape t;
    da_tape_init(&t, 1 << 22);
    da_tape_set_grad(&t, m->params.grad != NULL);
    int xs[4] = {in->B, c->in_channels, 8, 8}, cs[3] = {in->B, in->T, c->context_dim};
    da_tensor *out = da_unet_forward(&t, m, da_leaf(&t, in->x, NULL, 4, xs), in->ts,
                                     da_leaf(&t, in->ctx, NULL, 3, cs), in->keep);
    assert_int_equal(out->ndim, 4);
    assert_int_equal(out->shape[0], in->B);
    assert_int_equal(out->shape[1], c->out_channels);
    assert_int_equal(out->shape[2], 8);
    assert_int_equal(out->shape[3], 8);
    size_t ng = m->params.grad ? m->params.total : 0;
    float *res = malloc((out->size + ng) * sizeof(float));
    memcpy(res, out->data, out->size * sizeof(float));
    if (ng) {
        float *R = tu_alloc_fill(out->size, 77u, -1.0f, 1.0f);
        da_tape_backward_from(&t, out, R);
        memcpy(res + out->size, m->params.grad, ng * sizeof(float));
        free(R);
    }
    *n_out = out->size + ng;
    da_tape_free(&t);
    return res;
}

static da_unet *default_unet(int ch0, int ch1, int trainable)
{
    da_unet_config cfg = da_unet_config_default();
    cfg.ch[0] = ch0;
    cfg.ch[1] = ch1;
    da_unet *m = da_unet_create(&cfg, trainable);
    assert_non_null(m);
    da_rng rng;
    da_rng_seed(&rng, 1234);
    da_unet_init(m, &rng);
    return m;
}

/* default config (64, 128), batch 2, context 24 with padding: eps and every
 * parameter gradient bit-identical with 1 and 2 threads */
static void test_unet_default_threads(void **state)
{
    (void)state;
    da_unet *m = default_unet(64, 128, 1);
    if (getenv("DA_TEST_VERBOSE")) printf("  default UNet: %zu parameters\n", m->params.total);
    unet_inputs in = make_inputs(&m->cfg, 2, 24, 5u);
    int saved = da_get_threads();
    size_t n1, n2;
    da_set_threads(1);
    float *r1 = unet_step(m, &in, &n1);
    da_set_threads(2);
    float *r2 = unet_step(m, &in, &n2);
    da_set_threads(saved);
    assert_int_equal(n1, n2);
    tu_assert_bits("default UNet eps and all parameter grads, 1 vs 2 threads", r1, r2, n1);
    free(r1);
    free(r2);
    free_inputs(&in);
    da_unet_free(m);
}

/* Padded context tokens are invisible: changing them leaves eps unchanged
 * (bit for bit), changing a kept token does not; the timestep matters. */
static void test_unet_padding_and_time(void **state)
{
    (void)state;
    da_unet *m = default_unet(64, 128, 0);
    unet_inputs in = make_inputs(&m->cfg, 2, 24, 6u);
    size_t n;
    float *ref = unet_step(m, &in, &n);
    int D = m->cfg.context_dim;
    assert_false(in.keep[1 * 24 + 23]);                   /* row 1 ends in padding */
    for (int j = 0; j < D; j++) in.ctx[(1 * 24 + 23) * D + j] += 3.0f;
    float *pad = unet_step(m, &in, &n);
    tu_assert_bits("eps after changing a padded token", pad, ref, n);
    in.ctx[(1 * 24 + 0) * D] += 1.0f;                      /* a kept token */
    float *kept = unet_step(m, &in, &n);
    assert_true(memcmp(kept + n / 2, ref + n / 2, n / 2 * sizeof(float)) != 0);
    assert_memory_equal(kept, ref, n / 2 * sizeof(float)); /* row 0 untouched */
    in.ts[0] += 1.0f;
    float *later = unet_step(m, &in, &n);
    assert_true(memcmp(later, kept, n / 2 * sizeof(float)) != 0);
    free(ref); free(pad); free(kept); free(later);
    free_inputs(&in);
    da_unet_free(m);
}

/* unet-b: another width from the same code */
static void test_unet_b(void **state)
{
    (void)state;
    da_unet *m = default_unet(48, 96, 0);
    if (getenv("DA_TEST_VERBOSE")) printf("  unet-b (48, 96): %zu parameters\n", m->params.total);
    int e = da_params_find(&m->params, "up.0.res.conv1.weight");
    assert_true(e >= 0);
    assert_int_equal(m->params.shape[e][0], 48);
    assert_int_equal(m->params.shape[e][1], 96 + 48);   /* concat of the skip */
    unet_inputs in = make_inputs(&m->cfg, 3, 24, 8u);
    size_t n;
    float *r = unet_step(m, &in, &n);
    assert_int_equal(n, 3 * 4 * 64);
    for (size_t i = 0; i < n; i++) assert_true(isfinite(r[i]));
    free(r);
    free_inputs(&in);
    da_unet_free(m);
}

/* Cached cross-attention keys and values (what the sampler keeps over its
 * steps) give the plain forward's bits, for the whole batch and for a part
 * of it taking its rows' slice of the cache; a cache made from another
 * context changes the output (so the cache is really used); a cache of the
 * wrong shape is refused with a message. */
static void test_unet_context_kv(void **state)
{
    (void)state;
    da_unet *m = default_unet(64, 128, 0);
    unet_inputs in = make_inputs(&m->cfg, 3, 24, 9u), other = make_inputs(&m->cfg, 3, 24, 19u);
    int B = 3, T = 24, D = m->cfg.context_dim, xs[4] = {B, 4, 8, 8}, cs[3] = {B, T, D};
    da_tape t;
    da_tape_init(&t, 1 << 22);
    da_tape_set_grad(&t, 0);
    da_tensor *x = da_leaf(&t, in.x, NULL, 4, xs), *ctx = da_leaf(&t, in.ctx, NULL, 3, cs);
    da_tensor *plain = da_unet_forward(&t, m, x, in.ts, ctx, in.keep);
    da_unet_kv kv, kv_other;
    assert_int_equal(da_unet_context_kv(&t, m, ctx, &kv), DA_OK);
    for (int i = 0; i < DA_UNET_N_ATTN; i++) {
        assert_int_equal(kv.k[i]->shape[2], da_unet_attn_channels(m, i));
        assert_int_equal(kv.v[i]->shape[0], B);
    }
    da_tensor *cached = da_unet_forward_kv(&t, m, x, in.ts, ctx, in.keep, &kv);
    assert_non_null(cached);
    tu_assert_bits("eps with cached keys/values vs computed", cached->data, plain->data, plain->size);

    /* rows 1..2 alone, their keys/values sliced out of the batch's cache */
    int xs2[4] = {2, 4, 8, 8}, cs2[3] = {2, T, D};
    da_unet_kv part;
    for (int i = 0; i < DA_UNET_N_ATTN; i++) {
        int C = da_unet_attn_channels(m, i), ks[3] = {2, T, C};
        part.k[i] = da_leaf(&t, kv.k[i]->data + (size_t)T * C, NULL, 3, ks);
        part.v[i] = da_leaf(&t, kv.v[i]->data + (size_t)T * C, NULL, 3, ks);
    }
    da_tensor *x2 = da_leaf(&t, in.x + 4 * 64, NULL, 4, xs2), *c2 = da_leaf(&t, in.ctx + (size_t)T * D, NULL, 3, cs2);
    da_tensor *sliced = da_unet_forward_kv(&t, m, x2, in.ts + 1, c2, in.keep + T, &part);
    assert_non_null(sliced);
    tu_assert_bits("rows 1-2 with their slice of the cache", sliced->data, plain->data + 4 * 64, sliced->size);

    assert_int_equal(da_unet_context_kv(&t, m, da_leaf(&t, other.ctx, NULL, 3, cs), &kv_other), DA_OK);
    da_tensor *wrong = da_unet_forward_kv(&t, m, x, in.ts, ctx, in.keep, &kv_other);
    assert_true(memcmp(wrong->data, plain->data, plain->size * sizeof(float)) != 0);

    assert_null(da_unet_forward_kv(&t, m, x2, in.ts, c2, in.keep, &kv));   /* 3 rows of cache for 2 */
    assert_non_null(strstr(da_last_error(), "cached keys/values of down.0.attn must be (2, 24, 64)"));
    da_unet_kv swapped = kv;
    swapped.k[1] = kv.k[0];   /* 64 channels where 128 belong */
    assert_null(da_unet_forward_kv(&t, m, x, in.ts, ctx, in.keep, &swapped));
    assert_non_null(strstr(da_last_error(), "down.1.attn"));
    assert_int_equal(da_unet_context_kv(&t, m, x, &kv_other), DA_ERR_INVALID);   /* not a context */
    da_tape_free(&t);
    free_inputs(&in);
    free_inputs(&other);
    da_unet_free(m);
}

/* ---- inputs that do not fit ------------------------------------------------ */

/* Every shape a caller can get wrong gives NULL and a message naming what
 * was expected, never an abort; a fitting call still runs. */
static void test_unet_bad_inputs(void **state)
{
    (void)state;
    da_unet_config cfg = oracle_config();   /* in 4, context_dim 16 */
    da_unet *m = da_unet_create(&cfg, 0);
    assert_non_null(m);
    static float x[2 * 5 * 8 * 8], ctx[2 * 3 * 32];   /* room for every shape below */
    float ts[2] = {7.0f, 903.0f};
    da_tape t;
    da_tape_init(&t, 1 << 20);
    struct { int x[4], ctx[3]; const char *says; } bad[] = {
        {{2, 5, 8, 8}, {2, 3, 16}, "x must be (B, 4, H, W)"},    /* channels */
        {{2, 4, 7, 8}, {2, 3, 16}, "H, W even"},                  /* odd height */
        {{2, 4, 8, 0}, {2, 3, 16}, "H, W even"},                  /* empty width */
        {{0, 4, 8, 8}, {0, 3, 16}, "B >= 1"},                     /* no batch */
        {{2, 4, 8, 8}, {1, 3, 16}, "context must be (2, T, 16)"}, /* batch differs */
        {{2, 4, 8, 8}, {2, 3, 32}, "context must be (2, T, 16)"}, /* width differs */
        {{2, 4, 8, 8}, {2, 0, 16}, "T >= 1"},                     /* no tokens */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        da_tensor *xt = da_leaf(&t, x, NULL, 4, bad[i].x), *ct = da_leaf(&t, ctx, NULL, 3, bad[i].ctx);
        if (da_unet_forward(&t, m, xt, ts, ct, NULL)) fail_msg("case %zu accepted", i);
        if (!strstr(da_last_error(), bad[i].says)) fail_msg("case %zu: '%s'", i, da_last_error());
    }
    int xs[4] = {2, 4, 8, 8}, x3[3] = {2, 4, 64}, cs[3] = {2, 3, 16};
    da_tensor *xt = da_leaf(&t, x, NULL, 4, xs), *ct = da_leaf(&t, ctx, NULL, 3, cs);
    assert_null(da_unet_forward(&t, m, da_leaf(&t, x, NULL, 3, x3), ts, ct, NULL));   /* x not 4-D */
    assert_null(da_unet_forward(&t, m, xt, ts, da_leaf(&t, x, NULL, 4, xs), NULL));   /* context not 3-D */
    assert_null(da_unet_forward(&t, m, xt, ts, NULL, NULL));
    assert_null(da_unet_forward(&t, m, NULL, ts, ct, NULL));
    assert_null(da_unet_forward(&t, m, xt, NULL, ct, NULL));
    assert_non_null(strstr(da_last_error(), "timesteps"));
    da_tensor *eps = da_unet_forward(&t, m, xt, ts, ct, NULL);
    assert_non_null(eps);
    for (int d = 0; d < 4; d++) assert_int_equal(eps->shape[d], xs[d]);
    da_tape_free(&t);
    da_unet_free(m);
}

/* ---- files --------------------------------------------------------------- */

static void test_unet_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/dalign_unet_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char wpath[256], cpath[256];
    snprintf(wpath, sizeof wpath, "%s/unet.safetensors", dir);
    snprintf(cpath, sizeof cpath, "%s/unet.json", dir);

    da_unet_config cfg = oracle_config();
    assert_int_equal(da_unet_config_save(&cfg, cpath), DA_OK);
    da_unet_config back = da_unet_config_default();
    assert_int_equal(da_unet_config_load(&back, cpath), DA_OK);
    assert_memory_equal(&back, &cfg, sizeof cfg);

    da_unet *a = da_unet_create(&cfg, 0), *b = da_unet_create(&cfg, 0);
    da_rng rng;
    da_rng_seed(&rng, 3);
    da_unet_init(a, &rng);
    assert_int_equal(da_unet_save(a, wpath), DA_OK);
    assert_int_equal(da_unet_load(b, wpath), DA_OK);
    tu_assert_bits("unet weights after save/load", b->params.data, a->params.data, a->params.total);
    da_unet_free(b);
    /* the default width refuses the reduced file, naming a tensor */
    da_unet_config def = da_unet_config_default();
    b = da_unet_create(&def, 0);
    assert_int_not_equal(da_unet_load(b, wpath), DA_OK);
    assert_non_null(strstr(da_last_error(), "weight"));
    da_unet_free(b);
    da_unet_free(a);

    const char *bad[] = {"{\"heads\": 4}", "{\"channels\": [64, 128, 256]}", "{\"n_heads\": 3}",
                         "{\"time_freq_dim\": 63}", "{\"ln_eps\": -1}", "{\"groups\": true}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(cpath, "w");
        fputs(bad[i], f);
        fclose(f);
        da_unet_config c = da_unet_config_default();
        assert_int_not_equal(da_unet_config_load(&c, cpath), DA_OK);
        assert_memory_equal(&c, &def, sizeof c);
    }
    unlink(wpath);
    unlink(cpath);
    rmdir(dir);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestep_embedding),
        cmocka_unit_test(test_resblock_temb_gradcheck),
        cmocka_unit_test(test_transformer_gradcheck),
        cmocka_unit_test(test_unet_vs_torch),
        cmocka_unit_test(test_unet_default_threads),
        cmocka_unit_test(test_unet_padding_and_time),
        cmocka_unit_test(test_unet_b),
        cmocka_unit_test(test_unet_context_kv),
        cmocka_unit_test(test_unet_bad_inputs),
        cmocka_unit_test(test_unet_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
