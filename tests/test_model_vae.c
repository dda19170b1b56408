/* VAE and the blocks it shares with the UNet: finite differences of a
 * ResBlock with all its parameters, PyTorch parity of encode -> sample ->
 * decode -> loss (outputs and every parameter gradient), thread determinism
 * and shapes of the default config, weights and config files and their
 * error paths. The VAE's own ops, exp(s x) and clamp, are core ops now:
 * tests/test_ops_unary.c. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "models/blocks.h"

/* ---- ResBlock (no time embedding) by finite differences ---------------- */

/* The block's parameters enter the case as one flat input (in[1]): the
 * table is pointed at that buffer for each run, so finite differences cover
 * every parameter too. */
typedef struct block_ctx {
    da_params p;          /* table only; data/grad borrowed from the case */
    const char *prefix;
    da_blk_cfg bc;
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

static da_tensor *build_resblock(da_tape *t, da_tensor **in, void *ctx)
{
    block_ctx *b = ctx;
    borrow_params(b, in[1]);
    return da_blk_resblock(t, &b->p, b->prefix, in[0], NULL, &b->bc);
}

/* ResBlock 4 -> 6 channels (with nin_shortcut), 2 groups, on (2, 4, 3, 3).
 * GroupNorm makes the map curved: eps 1e-2 balances truncation against the
 * f32 rounding of the loss (~1e-7 |L| / eps); measured worst |err| 4e-4 on
 * a gradient of 5.7. Tolerance 1e-3 absolute + 1e-3 relative; a wrong term
 * gives errors of order 1e-1. */
static void test_resblock_gradcheck(void **state)
{
    (void)state;
    block_ctx b = {.prefix = "blk", .bc = {.groups = 2, .gn_eps = 1e-6f}};
    da_params_init(&b.p);
    da_blk_add_resblock(&b.p, "blk", 4, 6, 0);
    assert_true(da_params_find(&b.p, "blk.nin_shortcut.weight") >= 0);
    assert_true(da_params_find(&b.p, "blk.time_proj.weight") < 0);
    tu_case c = {.n_in = 2, .ndim = {4, 1}, .shape = {{2, 4, 3, 3}, {(int)b.p.total}},
                 .needs_grad = {1, 1}};
    c.data[0] = tu_alloc_fill(72, 3u, -1.0f, 1.0f);
    c.data[1] = tu_alloc_fill(b.p.total, 4u, -0.4f, 0.4f);
    /* norm scales near 1 so the block is not dominated by tiny gammas */
    for (int e = 0; e < b.p.n; e++)
        if (strstr(b.p.names[e], "norm") && strstr(b.p.names[e], "weight"))
            for (size_t i = 0; i < (size_t)b.p.shape[e][0]; i++) c.data[1][b.p.offset[e] + i] += 1.0f;
    tu_gradcheck("resblock 4->6", build_resblock, &b, &c, 1e-2, 1e-3, 1e-3);
    tu_check_threads("resblock 4->6", build_resblock, &b, &c);
    free(c.data[0]);
    free(c.data[1]);
    release_params(&b);
}

/* ---- parity with PyTorch ------------------------------------------------ */

/* the reduced config of tests/oracle/model_vae.py */
static da_vae_config oracle_config(void)
{
    da_vae_config c = da_vae_config_default();
    c.ch[0] = 8;
    c.ch[1] = 16;
    c.ch[2] = 24;
    c.groups = 4;
    c.kl_weight = 0.1f;
    return c;
}

/* encode -> sample with the reference eps -> decode -> loss, backward.
 * Tolerance 1e-4 * max|ref| per tensor: f32 against f32 with different GEMM
 * and reduction orders through ~20 layers (three GroupNorms per level
 * rescale errors); measured worst 6e-6 (a gradient).
 * A wrong op, name or layout gives errors of order 1e-1 and above. */
static void test_vae_vs_torch(void **state)
{
    (void)state;
    da_vae_config cfg = oracle_config();
    da_vae *m = da_vae_create(&cfg, 1);
    assert_non_null(m);
    assert_int_equal(da_vae_load(m, "tests/oracle/model_vae_weights.safetensors"), DA_OK);
    da_safetensors *st = tu_oracle("model_vae");
    float *x = tu_ref(st, "x", 2 * 3 * 16 * 16), *eps = tu_ref(st, "eps", 2 * 4 * 4 * 4);
    float *gx = calloc(2 * 3 * 16 * 16, sizeof(float));
    da_tape t;
    da_tape_init(&t, 1 << 20);
    int xs[4] = {2, 3, 16, 16};
    da_tensor *xt = da_leaf(&t, x, gx, 4, xs), *mean, *logvar;
    da_vae_encode(&t, m, xt, &mean, &logvar);
    assert_int_equal(mean->ndim, 4);
    assert_int_equal(mean->shape[1], 4);
    assert_int_equal(mean->shape[2], 4);
    da_tensor *z = da_vae_sample_eps(&t, mean, logvar, eps);
    da_tensor *xh = da_vae_decode(&t, m, z);
    float recon, kl;
    da_tensor *loss = da_vae_loss(&t, m, xt, xh, mean, logvar, &recon, &kl);
    da_tape_backward(&t, loss);

    const double rel = 1e-4;
    tu_check_scaled(st, "mean", mean->data, mean->size, rel, 0.0);
    tu_check_scaled(st, "logvar", logvar->data, logvar->size, rel, 0.0);
    tu_check_scaled(st, "z", z->data, z->size, rel, 0.0);
    tu_check_scaled(st, "x_hat", xh->data, xh->size, rel, 0.0);
    tu_check_scaled(st, "recon", &recon, 1, rel, 0.0);
    tu_check_scaled(st, "kl", &kl, 1, rel, 0.0);
    tu_check_scaled(st, "loss", loss->data, 1, rel, 0.0);
    /* the reported parts make up the loss (one f32 multiply-add apart) */
    assert_true(fabsf(loss->data[0] - (recon + cfg.kl_weight * kl)) <= 1e-6f * fabsf(loss->data[0]));
    tu_check_scaled(st, "grad.x", gx, 2 * 3 * 16 * 16, rel, 0.0);
    /* every parameter gradient: |err| <= rel * max|ref| of that tensor (no floor);
     * fails on the worst tensor */
    tu_compare_params(st, "grad.", &m->params, rel, 0.0);

    da_tape_free(&t);
    free(x);
    free(eps);
    free(gx);
    da_st_close(st);
    da_vae_free(m);
}

/* ---- default config: shapes, parameter count, threads ------------------ */

/* forward + backward of the default VAE on (2, 3, 32, 32): copies x_hat, the
 * loss and all parameter gradients into *out (malloc'd) */
static float *vae_step(da_vae *m, const float *x, uint64_t seed, size_t *n_out)
{
    da_params_zero_grad(&m->params);
    da_tape t;
    da_tape_init(&t, 1 << 22);
    int xs[4] = {2, 3, 32, 32};
    da_tensor *xt = da_leaf(&t, (float *)x, NULL, 4, xs), *mean, *logvar;
    da_vae_encode(&t, m, xt, &mean, &logvar);
    assert_int_equal(mean->shape[0], 2);
    assert_int_equal(mean->shape[1], 4);
    assert_int_equal(mean->shape[2], 8);
    assert_int_equal(mean->shape[3], 8);
    da_rng rng;
    da_rng_seed(&rng, seed);
    da_tensor *xh = da_vae_decode(&t, m, da_vae_sample(&t, mean, logvar, &rng));
    for (int d = 0; d < 4; d++) assert_int_equal(xh->shape[d], xs[d]);
    da_tensor *loss = da_vae_loss(&t, m, xt, xh, mean, logvar, NULL, NULL);
    da_tape_backward(&t, loss);
    size_t n = xh->size + 1 + m->params.total;
    float *out = malloc(n * sizeof(float));
    memcpy(out, xh->data, xh->size * sizeof(float));
    out[xh->size] = loss->data[0];
    memcpy(out + xh->size + 1, m->params.grad, m->params.total * sizeof(float));
    *n_out = n;
    da_tape_free(&t);
    return out;
}

static void test_vae_default_threads(void **state)
{
    (void)state;
    da_vae_config cfg = da_vae_config_default();
    da_vae *m = da_vae_create(&cfg, 1);
    assert_non_null(m);
    da_rng rng;
    da_rng_seed(&rng, 7);
    da_vae_init(m, &rng);
    if (getenv("DA_TEST_VERBOSE")) printf("  default VAE: %zu parameters\n", m->params.total);
    float *x = tu_alloc_fill(2 * 3 * 32 * 32, 9u, -1.0f, 1.0f);
    int saved = da_get_threads();
    size_t n1, n2;
    da_set_threads(1);
    float *r1 = vae_step(m, x, 11, &n1);
    da_set_threads(2);
    float *r2 = vae_step(m, x, 11, &n2);
    da_set_threads(saved);
    assert_int_equal(n1, n2);
    tu_assert_bits("default VAE x_hat, loss and all parameter grads, 1 vs 2 threads", r1, r2, n1);
    /* the sampled noise matters: another seed gives another loss */
    float *r3 = vae_step(m, x, 12, &n2);
    assert_true(r3[2 * 3 * 32 * 32] != r1[2 * 3 * 32 * 32]);
    free(r1);
    free(r2);
    free(r3);
    free(x);
    da_vae_free(m);
}

/* da_vae_sample draws eps with da_randn in mean's shape: same as sample_eps */
static void test_vae_sample_matches_randn(void **state)
{
    (void)state;
    da_tape t;
    da_tape_init(&t, 1 << 16);
    int s[4] = {1, 4, 2, 2};
    float mu[16], lv[16], eps[16];
    tu_fill(mu, 16, 1u, -1.0f, 1.0f);
    tu_fill(lv, 16, 2u, -2.0f, 1.0f);
    da_tensor *m = da_leaf(&t, mu, NULL, 4, s), *l = da_leaf(&t, lv, NULL, 4, s);
    da_rng rng;
    da_rng_seed(&rng, 5);
    da_tensor *z = da_vae_sample(&t, m, l, &rng);
    da_rng_seed(&rng, 5);
    da_randn(&rng, eps, 16);
    for (int i = 0; i < 16; i++) {
        float want = mu[i] + expf(0.5f * lv[i]) * eps[i];
        assert_true(z->data[i] == want);
    }
    da_tape_free(&t);
}

/* KL is 0 at mean = 0, logvar = 0, and 0.5 (mu^2 + e^lv - 1 - lv) elsewhere */
static void test_vae_loss_terms(void **state)
{
    (void)state;
    da_vae_config cfg = oracle_config();
    da_vae *m = da_vae_create(&cfg, 0);
    da_tape t;
    da_tape_init(&t, 1 << 16);
    int s[4] = {1, 1, 2, 2};
    float zero[4] = {0}, mu[4] = {1, -1, 0.5f, 0}, lv[4] = {0, 1, -1, 0.25f};
    float x[4] = {1, 2, 3, 4}, xh[4] = {1, 2, 3, 5};
    float recon, kl;
    da_tensor *xt = da_leaf(&t, x, NULL, 4, s), *xht = da_leaf(&t, xh, NULL, 4, s);
    da_vae_loss(&t, m, xt, xht, da_leaf(&t, zero, NULL, 4, s), da_leaf(&t, zero, NULL, 4, s), &recon, &kl);
    assert_true(kl == 0.0f);
    assert_true(recon == 0.25f);   /* one error of 1 over 4 values */
    da_tensor *loss = da_vae_loss(&t, m, xt, xht, da_leaf(&t, mu, NULL, 4, s), da_leaf(&t, lv, NULL, 4, s),
                                  &recon, &kl);
    double want = 0.0;
    for (int i = 0; i < 4; i++) want += 0.5 * (mu[i] * mu[i] + exp(lv[i]) - 1.0 - lv[i]);
    want /= 4;
    /* a handful of f32 ops on values ~1: 1e-6 */
    assert_true(fabs(kl - want) < 1e-6);
    assert_true(fabs(loss->data[0] - (0.25 + 0.1 * want)) < 1e-6);
    da_tape_free(&t);
    da_vae_free(m);
}

/* ---- inputs that do not fit ------------------------------------------------ */

/* Every shape a caller can get wrong gives an error and a message, never an
 * abort; NULL from one step makes the next fail the same way. */
static void test_vae_bad_inputs(void **state)
{
    (void)state;
    da_vae_config cfg = oracle_config();   /* in 3, latent 4 */
    da_vae *m = da_vae_create(&cfg, 0);
    assert_non_null(m);
    static float x[2 * 4 * 16 * 16], eps[2 * 4 * 4 * 4];
    da_tape t;
    da_tape_init(&t, 1 << 20);
    struct { int x[4]; const char *says; } bad[] = {
        {{2, 4, 16, 16}, "x must be (B, 3, H, W)"},   /* channels */
        {{2, 3, 18, 16}, "multiples of 4"},           /* height */
        {{2, 3, 16, 0}, "multiples of 4"},            /* empty width */
        {{0, 3, 16, 16}, "B >= 1"},                   /* no batch */
    };
    da_tensor *mean = NULL, *logvar = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        da_tensor *xt = da_leaf(&t, x, NULL, 4, bad[i].x);
        mean = logvar = xt;   /* must come back NULL */
        assert_int_equal(da_vae_encode(&t, m, xt, &mean, &logvar), DA_ERR_INVALID);
        assert_null(mean);
        assert_null(logvar);
        if (!strstr(da_last_error(), bad[i].says)) fail_msg("case %zu: '%s'", i, da_last_error());
    }
    assert_int_equal(da_vae_encode(&t, m, NULL, &mean, &logvar), DA_ERR_INVALID);
    /* the failed encode's NULLs go through sample, decode and loss as errors */
    da_tensor *z = da_vae_sample_eps(&t, mean, logvar, eps);
    assert_null(z);
    da_rng rng;
    da_rng_seed(&rng, 1);
    assert_null(da_vae_sample(&t, mean, logvar, &rng));
    assert_null(da_vae_decode(&t, m, z));
    int xs[4] = {2, 3, 16, 16}, zs[4] = {2, 4, 4, 4}, z3[4] = {2, 3, 4, 4}, z5[4] = {2, 4, 4, 5};
    da_tensor *xt = da_leaf(&t, x, NULL, 4, xs);
    assert_null(da_vae_loss(&t, m, xt, NULL, mean, logvar, NULL, NULL));
    /* decode: the latent's channels; sample: mean and logvar of one shape */
    assert_null(da_vae_decode(&t, m, da_leaf(&t, eps, NULL, 4, z3)));
    assert_non_null(strstr(da_last_error(), "z must be (B, 4, h, w)"));
    da_tensor *a = da_leaf(&t, eps, NULL, 4, zs), *b = da_leaf(&t, x, NULL, 4, z5);
    assert_null(da_vae_sample_eps(&t, a, b, eps));
    assert_null(da_vae_sample_eps(&t, a, a, NULL));
    assert_null(da_vae_sample(&t, a, b, &rng));
    /* loss: x and x_hat of one shape, mean and logvar of one shape */
    assert_null(da_vae_loss(&t, m, xt, a, a, a, NULL, NULL));
    assert_null(da_vae_loss(&t, m, xt, xt, a, b, NULL, NULL));
    /* a fitting x still runs the whole chain */
    assert_int_equal(da_vae_encode(&t, m, xt, &mean, &logvar), DA_OK);
    da_tensor *xh = da_vae_decode(&t, m, da_vae_sample_eps(&t, mean, logvar, eps));
    assert_non_null(xh);
    assert_non_null(da_vae_loss(&t, m, xt, xh, mean, logvar, NULL, NULL));
    da_tape_free(&t);
    da_vae_free(m);
}

/* ---- files --------------------------------------------------------------- */

static void test_vae_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/dalign_vae_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char wpath[256], cpath[256];
    snprintf(wpath, sizeof wpath, "%s/vae.safetensors", dir);
    snprintf(cpath, sizeof cpath, "%s/vae.json", dir);

    /* config round trip, including the scale factor */
    da_vae_config cfg = oracle_config();
    cfg.scale_factor = 0.1234567f;
    assert_int_equal(da_vae_config_save(&cfg, cpath), DA_OK);
    da_vae_config back = da_vae_config_default();
    assert_int_equal(da_vae_config_load(&back, cpath), DA_OK);
    assert_memory_equal(&back, &cfg, sizeof cfg);

    /* weights round trip: identical bits, scale factor from the metadata */
    da_vae *a = da_vae_create(&cfg, 0), *b;
    da_rng rng;
    da_rng_seed(&rng, 3);
    da_vae_init(a, &rng);
    assert_int_equal(da_vae_save(a, wpath), DA_OK);
    da_vae_config other = cfg;
    other.scale_factor = 1.0f;
    b = da_vae_create(&other, 0);
    assert_int_equal(da_vae_load(b, wpath), DA_OK);
    assert_true(b->cfg.scale_factor == cfg.scale_factor);
    tu_assert_bits("vae weights after save/load", b->params.data, a->params.data, a->params.total);
    da_vae_free(b);

    /* a model of another width refuses the file and names a tensor */
    da_vae_config def = da_vae_config_default();
    b = da_vae_create(&def, 0);
    assert_int_not_equal(da_vae_load(b, wpath), DA_OK);
    assert_non_null(strstr(da_last_error(), "encoder."));
    da_vae_free(b);
    da_vae_free(a);

    /* bad configs: unknown key, wrong type, wrong array length, bad widths */
    const char *bad[] = {
        "{\"in_chanels\": 3}", "{\"groups\": 8.5}", "{\"channels\": [32, 64]}",
        "{\"channels\": [30, 64, 128]}", "{\"kl_weight\": \"x\"}", "[1]", "{\"groups\": 8,}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(cpath, "w");
        fputs(bad[i], f);
        fclose(f);
        da_vae_config c = da_vae_config_default();
        assert_int_not_equal(da_vae_config_load(&c, cpath), DA_OK);
        assert_memory_equal(&c, &def, sizeof c);   /* untouched on failure */
    }
    assert_int_not_equal(da_vae_config_load(&cfg, "/nonexistent/vae.json"), DA_OK);
    cfg.groups = 5;   /* 8 % 5 != 0 */
    assert_null(da_vae_create(&cfg, 0));
    assert_non_null(strstr(da_last_error(), "groups"));

    unlink(wpath);
    unlink(cpath);
    rmdir(dir);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resblock_gradcheck),
        cmocka_unit_test(test_vae_vs_torch),
        cmocka_unit_test(test_vae_default_threads),
        cmocka_unit_test(test_vae_sample_matches_randn),
        cmocka_unit_test(test_vae_loss_terms),
        cmocka_unit_test(test_vae_bad_inputs),
        cmocka_unit_test(test_vae_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
