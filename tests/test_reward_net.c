/* Preference model (reward net): PyTorch parity of the scores and of every
 * parameter and image gradient, the Bradley-Terry loss (PyTorch, finite
 * differences, threads), thread determinism of the default config, a loss
 * that falls when fitting fixed pairs, the training function (determinism,
 * report), config/weights files and error paths.
 *
 * DA_REWARD_TRAIN_FULL=1 additionally runs the full training of the default
 * model (minutes) and prints its held-out pair accuracy against the rater's
 * noiseless accuracy; DA_REWARD_TRAIN_OUT=DIR saves it there as
 * reward_net.json + reward_net.safetensors. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the reduced config of tests/oracle/model_reward_net.py */
static da_reward_net_config oracle_config(void)
{
    da_reward_net_config c = {.image_size = 32, .n_blocks = 3, .channels = {8, 8, 16, 16}, .groups = 4,
                              .vocab_size = 34, .context = 24, .embed_dim = 8, .text_dim = 16, .hidden = 16};
    return c;
}

/* Parity of the full model: out = r(images, prompt tokens), gradients of
 * sum(out * r_out) for every parameter and the images. Tolerance 2e-5 of
 * each tensor's max|ref| (floor: 1e-2 of the largest parameter gradient, for
 * tensors whose true gradient is ~0, e.g. embedding rows of unused words):
 * f32 vs f32 with different conv/GEMM summation orders differ by a few ulp of
 * the largest terms (measured worst 3.5e-6, a film gradient); a wrong term is >= 1e-2. */
static void test_reward_net_vs_torch(void **state)
{
    (void)state;
    da_reward_net_config cfg = oracle_config();
    da_reward_net *m = da_reward_net_create(&cfg, 1);
    assert_non_null(m);
    if (da_reward_net_load(m, "tests/oracle/model_reward_net_weights.safetensors"))
        fail_msg("load: %s", da_last_error());
    da_safetensors *st = tu_oracle("model_reward_net");
    enum { B = 4, T = 24 };
    float *images = tu_ref(st, "images", (size_t)B * 3 * 32 * 32), *r_out = tu_ref(st, "r_out", B);
    float *fids = tu_ref(st, "ids", B * T), *fkeep = tu_ref(st, "keep", B * T);
    int ids[B * T];
    uint8_t keep[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int)fids[i];
        keep[i] = fkeep[i] != 0.0f;
    }
    float *dimages = calloc((size_t)B * 3 * 32 * 32, sizeof(float));
    da_tape t;
    da_tape_init(&t, 1 << 20);
    int ishape[4] = {B, 3, 32, 32};
    da_tensor *out = da_reward_net_forward(&t, m, da_leaf(&t, images, dimages, 4, ishape), ids, keep, T);
    assert_non_null(out);
    assert_int_equal(out->ndim, 1);
    assert_int_equal(out->shape[0], B);
    tu_check_scaled(st, "out", out->data, B, 2e-5, 0.0);
    da_tape_backward_from(&t, out, r_out);

    tu_compare_params(st, "grad.", &m->params, 2e-5, 1e-2);  /* floor: 1e-2 of the largest, see above */
    tu_check_scaled(st, "grad.images", dimages, (size_t)B * 3 * 32 * 32, 2e-5, 0.0);
    da_tape_free(&t);
    free(images); free(r_out); free(fids); free(fkeep); free(dimages);
    da_st_close(st);
    da_reward_net_free(m);
}

static da_tensor *build_bt(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_bt_loss(t, in[0], in[1]);
}

/* BT loss against PyTorch (a scalar from 6 terms of O(1): 1e-6 absolute and
 * relative covers float rounding of log1p/exp in both libraries), central
 * finite differences (eps 1e-3 on a smooth function with O(1) curvature:
 * truncation ~1e-7, f32 rounding of the loss ~1e-7/1e-3; 1e-3 is ample and a
 * wrong sign or a missing 1/N is off by O(0.1)), and 1 vs 2 threads. */
static void test_bt_loss(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("model_reward_net");
    const char *names[] = {"rw", "rl"};
    tu_oracle_case(st, "bt", build_bt, NULL, names, 2, 1e-6, 1e-6);
    da_st_close(st);

    tu_case c = {.n_in = 2, .ndim = {1, 1}, .shape = {{7}, {7}}, .needs_grad = {1, 1}};
    c.data[0] = tu_alloc_fill(7, 11u, -3.0f, 3.0f);
    c.data[1] = tu_alloc_fill(7, 12u, -3.0f, 3.0f);
    tu_gradcheck("bt loss", build_bt, NULL, &c, 1e-3, 1e-3, 1e-3);
    tu_check_threads("bt loss", build_bt, NULL, &c);

    /* known values: equal scores give log 2; d loss / d r_w = -sigmoid(-(r_w - r_l)) / N */
    memcpy(c.data[1], c.data[0], 7 * sizeof(float));
    float one = 1.0f;
    tu_result r = tu_run(build_bt, NULL, &c, &one);
    assert_true(fabsf(r.out[0] - logf(2.0f)) < 1e-6f);        /* log 2 in f32 */
    for (int i = 0; i < 7; i++) assert_true(fabsf(r.grad[0][i] + 0.5f / 7.0f) < 1e-7f);
    tu_result_free(&r);
    free(c.data[0]);
    free(c.data[1]);
}

/* ------------------------------------------------------------------------ */

/* n token rows of generated captions */
static void caption_tokens(int n, uint64_t seed, int *ids, uint8_t *keep)
{
    da_rng rng;
    da_rng_seed(&rng, seed);
    for (int b = 0; b < n; b++) {
        da_scene s;
        char cap[DA_CAPTION_MAX];
        assert_int_equal(da_world_example(&rng, DA_SPLIT_TRAIN, &s, NULL, cap, sizeof cap), DA_OK);
        assert_int_equal(da_tokenize(cap, ids + b * DA_MAX_TOKENS, keep + b * DA_MAX_TOKENS, NULL), DA_OK);
    }
}

typedef struct run_out {
    float *out, *grad, *dimages;
} run_out;

static run_out run_default(da_reward_net *m, const float *images, const int *ids, const uint8_t *keep, int B)
{
    size_t ni = (size_t)B * DA_IMG_FLOATS;
    run_out o;
    o.dimages = calloc(ni, sizeof(float));
    float *x = malloc(ni * sizeof(float)), *r = tu_alloc_fill((size_t)B, 52u, -1.0f, 1.0f);
    memcpy(x, images, ni * sizeof(float));
    da_params_zero_grad(&m->params);
    da_tape t;
    da_tape_init(&t, 1 << 22);
    int ishape[4] = {B, 3, 32, 32};
    da_tensor *out = da_reward_net_forward(&t, m, da_leaf(&t, x, o.dimages, 4, ishape), ids, keep, DA_MAX_TOKENS);
    assert_non_null(out);
    da_tape_backward_from(&t, out, r);
    o.out = malloc((size_t)B * sizeof(float));
    memcpy(o.out, out->data, (size_t)B * sizeof(float));
    o.grad = malloc(m->params.total * sizeof(float));
    memcpy(o.grad, m->params.grad, m->params.total * sizeof(float));
    da_tape_free(&t);
    free(x);
    free(r);
    return o;
}

/* Default config: one score per image, and the same bits with 1 and 2
 * threads for the scores, every parameter gradient and the image gradient. */
static void test_reward_net_default_threads(void **state)
{
    (void)state;
    da_reward_net_config cfg = da_reward_net_config_default();
    assert_int_equal(cfg.vocab_size, da_vocab_size());
    da_reward_net *m = da_reward_net_create(&cfg, 1);
    assert_non_null(m);
    da_rng rng;
    da_rng_seed(&rng, 4);
    da_reward_net_init(m, &rng);
    enum { B = 3 };
    float *images = tu_alloc_fill((size_t)B * DA_IMG_FLOATS, 61u, 0.0f, 1.0f);
    int ids[B * DA_MAX_TOKENS];
    uint8_t keep[B * DA_MAX_TOKENS];
    caption_tokens(B, 5, ids, keep);
    int saved = da_get_threads();
    da_set_threads(1);
    run_out a = run_default(m, images, ids, keep, B);
    da_set_threads(2);
    run_out b = run_default(m, images, ids, keep, B);
    da_set_threads(saved);
    tu_assert_bits("scores, 1 vs 2 threads", a.out, b.out, B);
    tu_assert_bits("parameter grads, 1 vs 2 threads", a.grad, b.grad, m->params.total);
    tu_assert_bits("image grads, 1 vs 2 threads", a.dimages, b.dimages, (size_t)B * DA_IMG_FLOATS);
    for (int i = 0; i < B; i++) assert_true(isfinite(a.out[i]));
    assert_true(tu_max_abs(a.grad, m->params.total) > 0.0f);
    /* every parameter tensor receives a gradient (none is disconnected) */
    for (int e = 0; e < m->params.n; e++)
        if (!(tu_max_abs(a.grad + m->params.offset[e], da_shape_size(m->params.ndim[e], m->params.shape[e])) > 0.0f))
            fail_msg("no gradient reaches %s", m->params.names[e]);
    free(a.out); free(a.grad); free(a.dimages);
    free(b.out); free(b.grad); free(b.dimages);
    free(images);
    da_reward_net_free(m);
}

/* ------------------------------------------------------------------------ */

/* 25 AdamW steps on 8 fixed rater-labelled synthetic pairs (winner first):
 * the BT loss starts near log 2 and must fall below half of it. */
static void test_reward_net_loss_falls(void **state)
{
    (void)state;
    da_reward_net_config cfg = oracle_config();
    da_reward_net *m = da_reward_net_create(&cfg, 1);
    da_rng rng;
    da_rng_seed(&rng, 3);
    da_reward_net_init(m, &rng);
    enum { N = 8 };
    float *imgs = malloc((size_t)2 * N * DA_IMG_FLOATS * sizeof(float));
    float a[DA_IMG_FLOATS], b[DA_IMG_FLOATS];
    int ids[2 * N * DA_MAX_TOKENS];
    uint8_t keep[2 * N * DA_MAX_TOKENS];
    da_rater_config rc = da_rater_config_default();
    for (int i = 0; i < N;) {
        char cap[DA_CAPTION_MAX];
        da_rater_terms ta, tb;
        assert_int_equal(da_synth_pair(&rng, DA_SPLIT_TRAIN, a, b, cap, sizeof cap), DA_OK);
        assert_int_equal(da_rater_utility(&rc, a, cap, &ta), DA_OK);
        assert_int_equal(da_rater_utility(&rc, b, cap, &tb), DA_OK);
        int label = da_rater_label(&rc, ta.utility, tb.utility, NULL);
        if (!label) continue;
        memcpy(imgs + (size_t)i * DA_IMG_FLOATS, label > 0 ? a : b, sizeof a);
        memcpy(imgs + (size_t)(N + i) * DA_IMG_FLOATS, label > 0 ? b : a, sizeof a);
        da_tokenize(cap, ids + i * DA_MAX_TOKENS, keep + i * DA_MAX_TOKENS, NULL);
        da_tokenize(cap, ids + (N + i) * DA_MAX_TOKENS, keep + (N + i) * DA_MAX_TOKENS, NULL);
        i++;
    }
    size_t P = m->params.total;
    float *m1 = calloc(P, sizeof(float)), *v1 = calloc(P, sizeof(float));
    da_adamw opt = {.lr = 5e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
    da_tape t;
    da_tape_init(&t, 1 << 22);
    int shape[4] = {2 * N, 3, 32, 32};
    float first = 0.0f, last = 0.0f;
    for (long step = 1; step <= 25; step++) {
        da_tape_reset(&t);
        da_params_zero_grad(&m->params);
        da_tensor *r = da_reward_net_forward(&t, m, da_leaf(&t, imgs, NULL, 4, shape), ids, keep, DA_MAX_TOKENS);
        da_tensor *loss = da_bt_loss(&t, da_narrow(&t, r, 0, 0, N), da_narrow(&t, r, 0, N, N));
        if (step == 1) first = loss->data[0];
        last = loss->data[0];
        da_tape_backward(&t, loss);
        da_adamw_step(m->params.data, m->params.grad, m1, v1, P, step, &opt);
    }
    if (getenv("DA_TEST_VERBOSE")) printf("  BT loss: %.4f -> %.4f after 25 steps\n", first, last);
    assert_true(fabsf(first - logf(2.0f)) < 0.3f);  /* random init: scores nearly equal */
    if (!(last < 0.5f * first)) fail_msg("BT loss did not fall: %g -> %g", first, last);
    da_tape_free(&t);
    free(m1); free(v1); free(imgs);
    da_reward_net_free(m);
}

/* A few steps of da_reward_net_train on the small config: same seed -> same
 * weights bit for bit; the report's accuracies are fractions and the
 * noiseless rater agrees with its own noisy labels more often than chance. */
static void test_reward_net_train_fn(void **state)
{
    (void)state;
    da_reward_net_config cfg = oracle_config();
    da_reward_train_config tc = da_reward_train_defaults();
    tc.steps = 3;
    tc.batch = 4;
    tc.warmup = 1;
    tc.val_pairs = 48;
    tc.seed = 9;
    da_reward_net *m[2];
    da_reward_train_report rep[2];
    for (int k = 0; k < 2; k++) {
        m[k] = da_reward_net_create(&cfg, 1);
        da_rng rng;
        da_rng_seed(&rng, 1);
        da_reward_net_init(m[k], &rng);
        if (da_reward_net_train(m[k], &tc, &rep[k]) != DA_OK) fail_msg("train: %s", da_last_error());
    }
    tu_assert_bits("weights after the same training", m[0]->params.data, m[1]->params.data, m[0]->params.total);
    assert_memory_equal(&rep[0], &rep[1], sizeof rep[0]);
    assert_int_equal(rep[0].n_val, 48);  /* ties were dropped and replaced */
    assert_true(rep[0].acc >= 0.0f && rep[0].acc <= 1.0f && rep[0].heldout_acc >= 0.0f && rep[0].heldout_acc <= 1.0f);
    assert_true(rep[0].rater_acc > 0.6f && rep[0].heldout_rater_acc > 0.6f);  /* labels carry signal */
    assert_true(isfinite(rep[0].loss_first) && isfinite(rep[0].loss_last));
    /* a frozen model cannot be trained */
    da_reward_net *frozen = da_reward_net_create(&cfg, 0);
    assert_int_equal(da_reward_net_train(frozen, &tc, NULL), DA_ERR_INVALID);
    tc.batch = 0;
    assert_int_equal(da_reward_net_train(m[0], &tc, NULL), DA_ERR_INVALID);
    da_reward_net_free(frozen);
    da_reward_net_free(m[0]);
    da_reward_net_free(m[1]);
}

/* ------------------------------------------------------------------------ */

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_reward_net_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/dalign_rnet_XXXXXX", cp[64], wp[64];
    assert_non_null(mkdtemp(dir));
    snprintf(cp, sizeof cp, "%s/reward_net.json", dir);
    snprintf(wp, sizeof wp, "%s/reward_net.safetensors", dir);
    da_reward_net_config c = da_reward_net_config_default(), back;
    memset(&back, 0, sizeof back);
    assert_int_equal(da_reward_net_config_save(&c, cp), DA_OK);
    assert_int_equal(da_reward_net_config_load(&back, cp), DA_OK);
    assert_memory_equal(&c, &back, sizeof c);
#define KEYS_REST "\"groups\": 4, \"vocab_size\": 34, \"context\": 24, \"embed_dim\": 8, \"text_dim\": 16"
    const char *bad[] = {
        "{\"image_size\": 32, \"channels\": [8, 8], " KEYS_REST "}",                       /* missing hidden */
        "{\"image_size\": 32, \"channels\": [8, 6], " KEYS_REST ", \"hidden\": 16}",        /* 6 % 4 groups */
        "{\"image_size\": 32, \"channels\": [], " KEYS_REST ", \"hidden\": 16}",
        "{\"image_size\": 32, \"channels\": 8, " KEYS_REST ", \"hidden\": 16}",
        "{\"image_size\": 32, \"channels\": [8], " KEYS_REST ", \"hidden\": 16, \"depth\": 1}",
        "{\"image_size\": 30, \"channels\": [8, 8, 8], " KEYS_REST ", \"hidden\": 16}",     /* 30 % 4 */
        "{\"image_size\": 32, \"channels\": [8], " KEYS_REST ", \"hidden\": -1}",
        "{\"image_size\": 32, \"channels\": [8], " KEYS_REST ", \"hidden\": 16, \"hidden\": 16}",
        "nonsense"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(cp, bad[i]);
        back = c;
        if (da_reward_net_config_load(&back, cp) == DA_OK) fail_msg("config %zu accepted: %s", i, bad[i]);
        assert_memory_equal(&c, &back, sizeof c);
    }
    assert_int_equal(da_reward_net_config_load(&back, "/nonexistent/reward_net.json"), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "/nonexistent/reward_net.json"));

    da_reward_net_config small = oracle_config();
    da_reward_net *a = da_reward_net_create(&small, 0), *b = da_reward_net_create(&small, 0);
    da_rng rng;
    da_rng_seed(&rng, 8);
    da_reward_net_init(a, &rng);
    assert_int_equal(da_reward_net_save(a, wp), DA_OK);
    assert_int_equal(da_reward_net_load(b, wp), DA_OK);
    tu_assert_bits("weights round trip", b->params.data, a->params.data, a->params.total);
    da_reward_net *d = da_reward_net_create(&c, 0);  /* default widths: shapes differ */
    assert_int_not_equal(da_reward_net_load(d, wp), DA_OK);
    assert_non_null(strstr(da_last_error(), "text.embedding.weight"));  /* the first tensor whose shape differs */
    da_reward_net_free(d);

    /* forward errors: wrong image size, bad token id, too many tokens */
    da_tape t;
    da_tape_init(&t, 1 << 20);
    float img[2 * 3 * 16 * 16] = {0};
    int ids[2 * 24] = {0};
    uint8_t keep[2 * 24] = {0};
    int bad_shape[4] = {2, 3, 16, 16}, ok_shape[4] = {1, 3, 32, 32};
    assert_null(da_reward_net_forward(&t, a, da_leaf(&t, img, NULL, 4, bad_shape), ids, keep, 24));
    assert_non_null(strstr(da_last_error(), "32"));
    float *img32 = calloc(DA_IMG_FLOATS, sizeof(float));
    ids[3] = 34;
    assert_null(da_reward_net_forward(&t, a, da_leaf(&t, img32, NULL, 4, ok_shape), ids, keep, 24));
    assert_non_null(strstr(da_last_error(), "34"));
    ids[3] = 0;
    assert_null(da_reward_net_forward(&t, a, da_leaf(&t, img32, NULL, 4, ok_shape), ids, keep, 25));
    assert_null(da_reward_net_forward(&t, a, da_leaf(&t, img32, NULL, 4, ok_shape), ids, keep, 2));
    assert_null(da_reward_net_forward(&t, a, da_leaf(&t, img32, NULL, 4, ok_shape), NULL, keep, 24));
    assert_null(da_reward_net_forward(&t, a, NULL, ids, keep, 24));
    /* Bradley-Terry: both reward vectors of one shape */
    int n3[1] = {3}, n4[1] = {4};
    assert_null(da_bt_loss(&t, da_leaf(&t, img, NULL, 1, n3), da_leaf(&t, img, NULL, 1, n4)));
    assert_non_null(strstr(da_last_error(), "bt loss"));
    assert_null(da_bt_loss(&t, NULL, da_leaf(&t, img, NULL, 1, n4)));
    /* a row with no real token beyond BOS/EOS has no trigram: finite score */
    keep[0] = keep[1] = 1;
    da_tensor *r = da_reward_net_forward(&t, a, da_leaf(&t, img32, NULL, 4, ok_shape), ids, keep, 24);
    assert_non_null(r);
    assert_true(isfinite(r->data[0]));
    da_tape_free(&t);
    free(img32);
    da_reward_net_config wrong = small;
    wrong.channels[2] = 10;  /* not divisible by 4 groups */
    assert_null(da_reward_net_create(&wrong, 0));
    da_reward_net_free(a);
    da_reward_net_free(b);
    remove(cp);
    remove(wp);
    rmdir(dir);
}

/* ------------------------------------------------------------------------ */

/* The shipped preference model (weights/reward_net, trained by `make
 * weights`' reward stage) on the validation pairs its training reported on
 * (da_reward_net_train with 0 steps only validates): the target, a
 * pair accuracy of at least 0.90 of the rater's own noiseless accuracy, and
 * the numbers make weights printed (0.764 / 0.838 train split, 0.730 /
 * 0.840 held-out split; accuracies are counts out of n_val pairs, so a
 * different model or different pairs move them by whole counts). Missing
 * weights are a failure: they are part of the repository. */
static void test_shipped_reward_net(void **state)
{
    (void)state;
    const char *dir = da_weights_dir(NULL);
    char cpath[1024], wpath[1024];
    snprintf(cpath, sizeof cpath, "%s/reward_net.json", dir);
    snprintf(wpath, sizeof wpath, "%s/reward_net.safetensors", dir);
    da_reward_net_config cfg;
    if (da_reward_net_config_load(&cfg, cpath) != DA_OK) fail_msg("shipped preference model: %s", da_last_error());
    da_reward_net *m = da_reward_net_create(&cfg, 1);
    assert_non_null(m);
    if (da_reward_net_load(m, wpath) != DA_OK) fail_msg("shipped preference model: %s", da_last_error());
    da_reward_train_config tc = da_reward_train_defaults();   /* seed 0, 1000 pairs per split: make weights' */
    tc.steps = 0;
    da_reward_train_report rep;
    if (da_reward_net_train(m, &tc, &rep) != DA_OK) fail_msg("validate: %s", da_last_error());
    if (getenv("DA_TEST_VERBOSE"))
        printf("shipped reward net: train split %.4f / %.4f = %.3f, held-out split %.4f / %.4f = %.3f (%d pairs)\n",
               rep.acc, rep.rater_acc, rep.acc / rep.rater_acc, rep.heldout_acc, rep.heldout_rater_acc,
               rep.heldout_acc / rep.heldout_rater_acc, rep.n_val);
    assert_true(rep.acc >= 0.9f * rep.rater_acc);
    /* half a count out of n_val: the same pairs and model give the same count */
    float half = 0.5f / (float)rep.n_val;
    assert_float_equal(rep.acc, 0.764f, half);
    assert_float_equal(rep.rater_acc, 0.838f, half);
    assert_float_equal(rep.heldout_acc, 0.730f, half);
    assert_float_equal(rep.heldout_rater_acc, 0.840f, half);
    da_reward_net_free(m);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reward_net_vs_torch),
        cmocka_unit_test(test_bt_loss),
        cmocka_unit_test(test_reward_net_default_threads),
        cmocka_unit_test(test_reward_net_loss_falls),
        cmocka_unit_test(test_reward_net_train_fn),
        cmocka_unit_test(test_reward_net_files),
        cmocka_unit_test(test_shipped_reward_net),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
