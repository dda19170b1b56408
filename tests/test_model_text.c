/* Text encoder: PyTorch parity (outputs and every parameter gradient), the
 * EOS gather op, causality/padding invariances, thread determinism of the
 * default config, config/weights files and error paths. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the reduced config of tests/oracle/model_text.py */
static da_text_config oracle_config(void)
{
    da_text_config c = {.vocab_size = 20, .context = 24, .d_model = 32, .n_layers = 2,
                        .n_heads = 4, .mlp_ratio = 4, .proj_dim = 16};
    return c;
}

/* Parity: forward features and pooled output and the gradient of
 * sum(features * R1) + sum(pooled * R2) w.r.t. every parameter.
 * Tolerance 2e-5 * max|ref| per tensor: f32 against f32 with different GEMM
 * summation orders through 2 layers, where errors are a few ulp of the
 * largest values (measured worst ~2e-6 of max|ref|); 2e-5 would still catch
 * any wrong term, which shows up at 1e-2 or more. */
static void test_text_vs_torch(void **state)
{
    (void)state;
    da_text_config cfg = oracle_config();
    da_text_encoder *m = da_text_encoder_create(&cfg, 1);
    assert_non_null(m);
    if (da_text_encoder_load(m, "tests/oracle/model_text_weights.safetensors"))
        fail_msg("load: %s", da_last_error());
    da_safetensors *st = tu_oracle("model_text");
    int B = 3, T = 24;
    float *idsf = tu_ref(st, "ids", (size_t)B * T), *keepf = tu_ref(st, "keep", (size_t)B * T);
    float *eosf = tu_ref(st, "eos", (size_t)B);
    int ids[3 * 24], eos[3], eos2[3];
    uint8_t keep[3 * 24];
    for (int i = 0; i < B * T; i++) { ids[i] = (int)idsf[i]; keep[i] = keepf[i] != 0.0f; }
    for (int b = 0; b < B; b++) eos[b] = (int)eosf[b];
    assert_int_equal(da_text_eos_positions(eos2, keep, B, T), DA_OK);
    for (int b = 0; b < B; b++) assert_int_equal(eos2[b], eos[b]);

    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_tensor *feats = da_text_encoder_forward(&t, m, ids, keep, B, T);
    assert_non_null(feats);
    da_tensor *pooled = da_text_encoder_pool(&t, m, feats, eos);
    assert_int_equal(feats->size, (size_t)B * T * 32);
    assert_int_equal(pooled->size, (size_t)B * 16);
    tu_check_scaled(st, "features", feats->data, feats->size, 2e-5, 0.0);
    tu_check_scaled(st, "pooled", pooled->data, pooled->size, 2e-5, 0.0);

    float *r1 = tu_ref(st, "r_features", feats->size), *r2 = tu_ref(st, "r_pooled", pooled->size);
    /* feats is upstream of pooled, so its seed is in place before replay reaches it */
    for (size_t i = 0; i < feats->size; i++) feats->grad[i] += r1[i];
    da_tape_backward_from(&t, pooled, r2);
    /* Every parameter gradient against grad.<name>, |err| <= rel * scale with
     * scale = max(max|ref| of the tensor, 1e-2 * max|ref| over all tensors): the
     * floor is there because some gradients are exactly zero in exact arithmetic
     * (k_proj.bias: softmax ignores a shift shared by a whole row of scores), so
     * their reference is pure rounding noise of the terms that cancel. Fails on
     * the worst tensor (largest err / scale), so one message names it. */
    tu_compare_params(st, "grad.", &m->params, 2e-5, 1e-2);

    free(r1); free(r2); free(idsf); free(keepf); free(eosf);
    da_tape_free(&t);
    da_st_close(st);
    da_text_encoder_free(m);
}

/* ------------------------------------------------------------------------ */

static int gather_pos[3] = {4, 0, 2};

static da_tensor *build_gather(da_tape *t, da_tensor **in, void *ctx)
{
    return da_text_gather(t, in[0], ctx);
}

static tu_case gather_case(void)
{
    tu_case c = {.n_in = 1, .ndim = {3}, .shape = {{3, 5, 7}}, .needs_grad = {1}};
    c.data[0] = tu_alloc_fill(3 * 5 * 7, 7u, -1.0f, 1.0f);
    return c;
}

/* A row selection is linear: central differences are exact up to f32
 * rounding of the loss terms (~1e-7 / 2 eps), so 1e-3 is ample; unselected
 * rows must get exactly zero gradient, which the same check enforces. */
static void test_gather_gradcheck(void **state)
{
    (void)state;
    tu_case c = gather_case();
    tu_gradcheck("text gather", build_gather, gather_pos, &c, 1e-2, 1e-3, 1e-3);
    tu_check_threads("text gather", build_gather, gather_pos, &c);
    tu_result r = tu_run(build_gather, gather_pos, &c, NULL);
    assert_int_equal(r.out_n, 3 * 7);
    for (int b = 0; b < 3; b++)  /* forward copies exactly the selected row */
        tu_assert_bits("gather row", r.out + b * 7, c.data[0] + (b * 5 + gather_pos[b]) * 7, 7);
    tu_result_free(&r);
    free(c.data[0]);
}

/* ------------------------------------------------------------------------ */

/* B rows of random captions of the given lengths (BOS ... EOS, then PAD) */
static void make_batch(int *ids, uint8_t *keep, int *eos, const int *len, int B, int T, int V, uint32_t seed)
{
    float *u = tu_alloc_fill((size_t)B * T, seed, 0.0f, 1.0f);
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < T; j++) {
            int i = b * T + j;
            ids[i] = j == 0 ? 1 : j == len[b] - 1 ? 2 : j < len[b] ? 3 + (int)(u[i] * (V - 3)) : 0;
            keep[i] = j < len[b];
        }
        eos[b] = len[b] - 1;
    }
    free(u);
}

typedef struct run_out {
    float *feats, *pooled, *grad;
} run_out;

/* forward + backward of sum(feats * r1) + sum(pooled * r2) with fixed r's */
static run_out run_model(da_text_encoder *m, const int *ids, const uint8_t *keep, const int *eos, int B, int T)
{
    da_params_zero_grad(&m->params);
    da_tape t;
    da_tape_init(&t, 1 << 22);
    da_tensor *feats = da_text_encoder_forward(&t, m, ids, keep, B, T);
    assert_non_null(feats);
    da_tensor *pooled = da_text_encoder_pool(&t, m, feats, eos);
    float *r1 = tu_alloc_fill(feats->size, 1u, -1.0f, 1.0f), *r2 = tu_alloc_fill(pooled->size, 2u, -1.0f, 1.0f);
    for (size_t i = 0; i < feats->size; i++) feats->grad[i] += r1[i];
    da_tape_backward_from(&t, pooled, r2);
    run_out o;
    o.feats = malloc(feats->size * sizeof(float));
    o.pooled = malloc(pooled->size * sizeof(float));
    o.grad = malloc(m->params.total * sizeof(float));
    memcpy(o.feats, feats->data, feats->size * sizeof(float));
    memcpy(o.pooled, pooled->data, pooled->size * sizeof(float));
    memcpy(o.grad, m->params.grad, m->params.total * sizeof(float));
    free(r1); free(r2);
    da_tape_free(&t);
    return o;
}

static void run_out_free(run_out *o) { free(o->feats); free(o->pooled); free(o->grad); }

/* Default config: shapes, and the same bits for 1 and 2 threads in the
 * features, the pooled output and every parameter gradient. */
static void test_text_default_threads(void **state)
{
    (void)state;
    da_text_config cfg = da_text_config_default();
    da_text_encoder *m = da_text_encoder_create(&cfg, 1);
    assert_non_null(m);
    da_rng rng;
    da_rng_seed(&rng, 3);
    da_text_encoder_init(m, &rng);
    enum { B = 4, T = 24 };
    int ids[B * T], eos[B], len[B] = {24, 9, 5, 2};
    uint8_t keep[B * T];
    make_batch(ids, keep, eos, len, B, T, cfg.vocab_size, 11u);
    int saved = da_get_threads();
    da_set_threads(1);
    run_out a = run_model(m, ids, keep, eos, B, T);
    da_set_threads(2);
    run_out b = run_model(m, ids, keep, eos, B, T);
    da_set_threads(saved);
    tu_assert_bits("features, 1 vs 2 threads", a.feats, b.feats, (size_t)B * T * cfg.d_model);
    tu_assert_bits("pooled, 1 vs 2 threads", a.pooled, b.pooled, (size_t)B * cfg.proj_dim);
    tu_assert_bits("parameter grads, 1 vs 2 threads", a.grad, b.grad, m->params.total);
    float g = tu_max_abs(a.grad, m->params.total);
    assert_true(g > 0.0f && isfinite(g));  /* the backward really ran */
    run_out_free(&a);
    run_out_free(&b);
    da_text_encoder_free(m);
}

/* Causal attention with key padding: what follows a row's EOS (pad ids,
 * extra context) can change neither the features up to EOS nor the pooled
 * output; and a batch of 1 row gives that row's result of a batch of 3. */
static void test_text_causal_padding(void **state)
{
    (void)state;
    da_text_config cfg = oracle_config();
    da_text_encoder *m = da_text_encoder_create(&cfg, 0);
    assert_non_null(m);
    da_rng rng;
    da_rng_seed(&rng, 5);
    da_text_encoder_init(m, &rng);
    enum { B = 3, T = 12 };
    int ids[B * T], ids2[B * T], eos[B], len[B] = {12, 6, 3};
    uint8_t keep[B * T];
    make_batch(ids, keep, eos, len, B, T, cfg.vocab_size, 21u);
    memcpy(ids2, ids, sizeof ids);
    for (int b = 0; b < B; b++)
        for (int j = len[b]; j < T; j++) ids2[b * T + j] = 5 + j % 7;  /* garbage in the pad slots */
    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_tensor *f1 = da_text_encoder_forward(&t, m, ids, keep, B, T);
    da_tensor *p1 = da_text_encoder_pool(&t, m, f1, eos);
    da_tensor *f2 = da_text_encoder_forward(&t, m, ids2, keep, B, T);
    da_tensor *p2 = da_text_encoder_pool(&t, m, f2, eos);
    for (int b = 0; b < B; b++)
        tu_assert_bits("features up to EOS with other pads", f2->data + (size_t)b * T * 32,
                       f1->data + (size_t)b * T * 32, (size_t)len[b] * 32);
    tu_assert_bits("pooled with other pads", p2->data, p1->data, p1->size);
    /* row 1 alone, truncated to its length: same features within f32 noise
     * (a different batch shape may change GEMM blocking, hence not bits) */
    da_tensor *f3 = da_text_encoder_forward(&t, m, ids + T, keep + T, 1, len[1]);
    tu_assert_close("row alone vs in batch", f3->data, f1->data + (size_t)T * 32, (size_t)len[1] * 32, 1e-5, 1e-5);
    da_tape_free(&t);
    da_text_encoder_free(m);
}

/* ------------------------------------------------------------------------ */

/* The suite's scratch directory, made on first use; the group teardown
 * removes it with everything in it, also after a failed test. */
static char tmpdir[64];

/* tmpdir/NAME into path (128 bytes): each path its own buffer, so a later
 * call cannot change an earlier path under the caller */
static const char *tmp_path(char *path, const char *name)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/dalign_text_XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
    }
    snprintf(path, 128, "%s/%s", tmpdir, name);
    return path;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    if (tmpdir[0]) tu_rm_tree(tmpdir);
    tmpdir[0] = '\0';
    return 0;
}

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_text_files(void **state)
{
    (void)state;
    /* config JSON round trip */
    da_text_config c = oracle_config(), back;
    memset(&back, 0, sizeof back);
    char cp[128], wp[128], missing[128];
    tmp_path(cp, "text.json");
    assert_int_equal(da_text_config_save(&c, cp), DA_OK);
    assert_int_equal(da_text_config_load(&back, cp), DA_OK);
    assert_memory_equal(&c, &back, sizeof c);
    /* strict config reader */
    const char *bad[] = {
        "{\"vocab_size\": 20, \"context\": 24, \"d_model\": 32, \"n_layers\": 2, \"n_heads\": 4, \"mlp_ratio\": 4}",
        "{\"vocab_size\": 20, \"context\": 24, \"d_model\": 32, \"n_layers\": 2, \"n_heads\": 4, \"mlp_ratio\": 4, \"proj_dim\": 16, \"x\": 1}",
        "{\"vocab_size\": -20, \"context\": 24, \"d_model\": 32, \"n_layers\": 2, \"n_heads\": 4, \"mlp_ratio\": 4, \"proj_dim\": 16}",
        "{\"vocab_size\": 20, \"context\": 24, \"d_model\": 30, \"n_layers\": 2, \"n_heads\": 4, \"mlp_ratio\": 4, \"proj_dim\": 16}",
        "{\"vocab_size\": 20.5, \"context\": 24, \"d_model\": 32, \"n_layers\": 2, \"n_heads\": 4, \"mlp_ratio\": 4, \"proj_dim\": 16}",
        "[1, 2]", "{", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(cp, bad[i]);
        back = c;
        da_status s = da_text_config_load(&back, cp);
        if (s == DA_OK) fail_msg("config %zu accepted: %s", i, bad[i]);
        assert_memory_equal(&c, &back, sizeof c);  /* untouched on failure */
    }
    assert_int_not_equal(da_text_config_load(&back, tmp_path(missing, "missing.json")), DA_OK);

    /* weights round trip, bit for bit */
    da_text_encoder *a = da_text_encoder_create(&c, 0), *b = da_text_encoder_create(&c, 0);
    da_rng rng;
    da_rng_seed(&rng, 9);
    da_text_encoder_init(a, &rng);
    tmp_path(wp, "text.safetensors");
    assert_int_equal(da_text_encoder_save(a, wp), DA_OK);
    assert_int_equal(da_text_encoder_load(b, wp), DA_OK);
    tu_assert_bits("weights round trip", b->params.data, a->params.data, a->params.total);
    /* a file for another config is refused with the tensor's name */
    da_text_config other = c;
    other.d_model = 16;
    da_text_encoder *o = da_text_encoder_create(&other, 0);
    assert_int_not_equal(da_text_encoder_load(o, wp), DA_OK);
    assert_non_null(strstr(da_last_error(), "token_embedding.weight"));
    da_text_encoder_free(o);
    da_text_encoder_free(b);

    /* bad inputs: a clear error, no crash */
    da_tape t;
    da_tape_init(&t, 1 << 20);
    int ids[25] = {1, 3, 2};
    uint8_t keep[25] = {1, 1, 1};
    assert_null(da_text_encoder_forward(&t, a, ids, keep, 1, 25));  /* T > context */
    assert_non_null(strstr(da_last_error(), "24"));
    ids[1] = 20;
    assert_null(da_text_encoder_forward(&t, a, ids, keep, 1, 3));   /* id == V */
    assert_non_null(strstr(da_last_error(), "token id 20"));
    ids[1] = -1;
    assert_null(da_text_encoder_forward(&t, a, ids, keep, 1, 3));
    int eos[2];
    uint8_t empty[6] = {1, 1, 0, 0, 0, 0};
    assert_int_equal(da_text_eos_positions(eos, empty, 2, 3), DA_ERR_INVALID);
    assert_null(da_text_encoder_forward(&t, a, NULL, keep, 1, 3));
    /* pooling: a position outside the row, features of another width */
    ids[1] = 3;
    da_tensor *f = da_text_encoder_forward(&t, a, ids, keep, 1, 3);   /* (1, 3, 32) */
    assert_non_null(f);
    eos[0] = 3;
    assert_null(da_text_encoder_pool(&t, a, f, eos));
    assert_non_null(strstr(da_last_error(), "position 3 of row 0"));
    eos[0] = -1;
    assert_null(da_text_gather(&t, f, eos));
    eos[0] = 2;
    assert_null(da_text_gather(&t, f, NULL));
    assert_null(da_text_encoder_pool(&t, a, NULL, eos));
    int f16[3] = {1, 3, 16}, f2d[2] = {3, 32};
    assert_null(da_text_encoder_pool(&t, a, da_leaf(&t, f->data, NULL, 3, f16), eos));
    assert_non_null(strstr(da_last_error(), "(B, T, 32)"));
    assert_null(da_text_gather(&t, da_leaf(&t, f->data, NULL, 2, f2d), eos));
    assert_non_null(da_text_encoder_pool(&t, a, f, eos));
    da_tape_free(&t);
    other = c;
    other.n_heads = 5;  /* 32 % 5 != 0 */
    assert_null(da_text_encoder_create(&other, 0));
    da_text_encoder_free(a);
}

/* Init follows the documented rules: layernorm weight 1 bias 0, embeddings
 * with std ~0.02, Linear weights within 1/sqrt(fan_in). */
static void test_text_init(void **state)
{
    (void)state;
    da_text_config cfg = da_text_config_default();
    da_text_encoder *m = da_text_encoder_create(&cfg, 0);
    da_rng rng;
    da_rng_seed(&rng, 1);
    da_text_encoder_init(m, &rng);
    const da_params *p = &m->params;
    float *w = da_params_get(p, "layers.2.ln2.weight"), *bias = da_params_get(p, "final_ln.bias");
    for (int i = 0; i < cfg.d_model; i++) { assert_true(w[i] == 1.0f); assert_true(bias[i] == 0.0f); }
    float *fc2 = da_params_get(p, "layers.0.mlp.fc2.weight");
    size_t n = (size_t)cfg.d_model * 4 * cfg.d_model;
    float bound = 1.0f / sqrtf(4.0f * cfg.d_model);
    assert_true(tu_max_abs(fc2, n) <= bound && tu_max_abs(fc2, n) > 0.9f * bound);
    float *emb = da_params_get(p, "token_embedding.weight");
    double ss = 0;
    size_t ne = (size_t)cfg.vocab_size * cfg.d_model;
    for (size_t i = 0; i < ne; i++) ss += (double)emb[i] * emb[i];
    double sd = sqrt(ss / ne);  /* 8192 draws: the sample std is within 3% of 0.02 */
    assert_true(sd > 0.0194 && sd < 0.0206);
    da_text_encoder_free(m);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_vs_torch),
        cmocka_unit_test(test_gather_gradcheck),
        cmocka_unit_test(test_text_default_threads),
        cmocka_unit_test(test_text_causal_padding),
        cmocka_unit_test(test_text_files),
        cmocka_unit_test(test_text_init),
    };
    return cmocka_run_group_tests(tests, NULL, remove_tmpdir);
}
