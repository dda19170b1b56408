/* CLIP image tower and InfoNCE: PyTorch parity (embeddings, loss, every
 * parameter gradient, image and text gradients), the clamp of logit_scale,
 * finite differences of the L2 normalisation and the loss, thread
 * determinism of the default config, a contrastive loss that falls under
 * AdamW, CLIPScore, config/weights files and error paths. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the reduced config of tests/oracle/model_clip.py */
static da_clip_config oracle_config(void)
{
    da_clip_config c = {.image_size = 32, .in_channels = 3, .n_blocks = 3,
                        .channels = {8, 16, 16, 16}, .groups = 4, .embed_dim = 16};
    return c;
}

/* Parity of the full model: emb = tower(images), loss = InfoNCE(emb, txt,
 * logit_scale), gradients of loss + sum(emb * r_emb) for every parameter,
 * the images and txt. Tolerance 2e-5 of each tensor's max|ref| (floor: 1e-2
 * of the largest parameter gradient, for tensors whose true gradient is ~0):
 * f32 vs f32 with different conv/GEMM summation orders give errors of a few
 * ulp of the largest terms (measured worst ~1e-6); a wrong term is >= 1e-2. */
static void test_clip_vs_torch(void **state)
{
    (void)state;
    da_clip_config cfg = oracle_config();
    da_clip *m = da_clip_create(&cfg, 1);
    assert_non_null(m);
    if (da_clip_load(m, "tests/oracle/model_clip_weights.safetensors")) fail_msg("load: %s", da_last_error());
    da_safetensors *st = tu_oracle("model_clip");
    enum { B = 4, E = 16 };
    float *images = tu_ref(st, "images", (size_t)B * 3 * 32 * 32), *txt = tu_ref(st, "txt", (size_t)B * E);
    float *dimages = calloc((size_t)B * 3 * 32 * 32, sizeof(float)), *dtxt = calloc((size_t)B * E, sizeof(float));
    float *r_emb = tu_ref(st, "r_emb", (size_t)B * E);

    da_tape t;
    da_tape_init(&t, 1 << 20);
    int ishape[4] = {B, 3, 32, 32}, tshape[2] = {B, E};
    da_tensor *emb = da_clip_image_forward(&t, m, da_leaf(&t, images, dimages, 4, ishape));
    assert_non_null(emb);
    da_tensor *loss = da_clip_loss(&t, emb, da_leaf(&t, txt, dtxt, 2, tshape), da_clip_logit_scale(&t, m));
    tu_check_scaled(st, "emb", emb->data, emb->size, 2e-5, 0.0);
    tu_check_scaled(st, "loss", loss->data, 1, 2e-5, 0.0);
    for (size_t i = 0; i < emb->size; i++) emb->grad[i] += r_emb[i];  /* seed before replay */
    da_tape_backward(&t, loss);

    tu_compare_params(st, "grad.", &m->params, 2e-5, 1e-2);  /* floor: 1e-2 of the largest, see above */
    tu_check_scaled(st, "grad.images", dimages, (size_t)B * 3 * 32 * 32, 2e-5, 0.0);
    tu_check_scaled(st, "grad.txt", dtxt, (size_t)B * E, 2e-5, 0.0);

    da_tape_free(&t);
    free(images); free(txt); free(dimages); free(dtxt); free(r_emb);
    da_st_close(st);
    da_clip_free(m);
}

static da_tensor *build_loss(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_clip_loss(t, in[0], in[1], in[2]);
}

/* InfoNCE alone below (logit_scale 1) and above (5: exp 148 -> 100) the clamp:
 * loss and gradients of img, txt and logit_scale (0 above the clamp). A scalar
 * loss of ~1 from sums of 5-6 products: 1e-5 absolute and relative covers
 * float rounding in both libraries. */
static void test_clip_loss_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("model_clip");
    const char *names[] = {"img", "txt", "ls"};
    tu_oracle_case(st, "loss_small", build_loss, NULL, names, 3, 1e-5, 1e-5);
    tu_oracle_case(st, "loss_clamped", build_loss, NULL, names, 3, 1e-5, 1e-5);
    da_st_close(st);
}

/* ------------------------------------------------------------------------ */

static da_tensor *build_normalize(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_clip_normalize(t, in[0]);
}

/* Finite differences of x/||x|| and of the whole loss (x ~ U(-1,1), rows
 * far from zero norm; logit_scale below and above the clamp).
 * normalize: eps 1e-3 on a smooth O(1) map; truncation ~1e-6 and f32
 * rounding ~1e-7 / 2e-3: 1e-3 abs + rel is ample.
 * loss: logits scaled by up to 100 make it sharp, so eps 3e-3 balances
 * truncation (~eps^2 times the third derivative) against f32 rounding of the
 * loss (~2e-7 / 6e-3); measured worst error 1.3e-3 on a gradient of 2.8
 * (clamped case), within 1e-3 abs + 1e-3 rel; a missing term is off by O(1). */
static void test_clip_gradcheck(void **state)
{
    (void)state;
    tu_case c = {.n_in = 1, .ndim = {2}, .shape = {{3, 5}}, .needs_grad = {1}};
    c.data[0] = tu_alloc_fill(15, 31u, -1.0f, 1.0f);
    tu_gradcheck("normalize", build_normalize, NULL, &c, 1e-3, 1e-3, 1e-3);
    tu_check_threads("normalize", build_normalize, NULL, &c);
    free(c.data[0]);

    const float scales[2] = {logf(1.0f / 0.07f), 5.0f};
    for (int k = 0; k < 2; k++) {
        float ls = scales[k];
        tu_case l = {.n_in = 3, .ndim = {2, 2, 0}, .shape = {{4, 6}, {4, 6}, {0}}, .needs_grad = {1, 1, 1}};
        l.data[0] = tu_alloc_fill(24, 41u, -1.0f, 1.0f);
        l.data[1] = tu_alloc_fill(24, 42u, -1.0f, 1.0f);
        l.data[2] = &ls;
        tu_gradcheck(k ? "clip loss (clamped)" : "clip loss", build_loss, NULL, &l, 3e-3, 1e-3, 1e-3);
        tu_check_threads("clip loss", build_loss, NULL, &l);
        tu_result r = tu_run(build_loss, NULL, &l, NULL);
        if (k == 1) assert_true(r.grad[2][0] == 0.0f);  /* no gradient above the clamp */
        else assert_true(fabsf(r.grad[2][0]) > 1e-4f);
        tu_result_free(&r);
        free(l.data[0]);
        free(l.data[1]);
    }
}

/* a zero row normalises to zeros (F.normalize), never NaN */
static void test_clip_normalize_zero_row(void **state)
{
    (void)state;
    float x[6] = {0, 0, 0, 3, 4, 0}, g[6] = {0};
    da_tape t;
    da_tape_init(&t, 1 << 16);
    int shape[2] = {2, 3};
    da_tensor *y = da_clip_normalize(&t, da_leaf(&t, x, g, 2, shape));
    float want[6] = {0, 0, 0, 0.6f, 0.8f, 0};
    tu_assert_close("normalize", y->data, want, 6, 1e-7, 0.0);
    float dy[6] = {1, 1, 1, 0, 0, 1};
    da_tape_backward_from(&t, y, dy);
    for (int i = 0; i < 6; i++) assert_true(isfinite(g[i]));
    da_tape_free(&t);
}

/* ------------------------------------------------------------------------ */

typedef struct run_out {
    float *emb, loss, *grad, *dimages;
} run_out;

/* forward + backward of loss + sum(emb * r) with fixed r and text embeddings */
static run_out run_default(da_clip *m, const float *images, int B)
{
    int E = m->cfg.embed_dim;
    size_t ni = (size_t)B * 3 * 32 * 32;
    run_out o;
    o.dimages = calloc(ni, sizeof(float));
    float *x = malloc(ni * sizeof(float));
    memcpy(x, images, ni * sizeof(float));
    float *txt = tu_alloc_fill((size_t)B * E, 51u, -1.0f, 1.0f), *r = tu_alloc_fill((size_t)B * E, 52u, -1.0f, 1.0f);
    da_params_zero_grad(&m->params);
    da_tape t;
    da_tape_init(&t, 1 << 22);
    int ishape[4] = {B, 3, 32, 32}, tshape[2] = {B, E};
    da_tensor *emb = da_clip_image_forward(&t, m, da_leaf(&t, x, o.dimages, 4, ishape));
    da_tensor *loss = da_clip_loss(&t, emb, da_leaf(&t, txt, NULL, 2, tshape), da_clip_logit_scale(&t, m));
    for (size_t i = 0; i < emb->size; i++) emb->grad[i] += r[i];
    da_tape_backward(&t, loss);
    o.emb = malloc(emb->size * sizeof(float));
    memcpy(o.emb, emb->data, emb->size * sizeof(float));
    o.loss = loss->data[0];
    o.grad = malloc(m->params.total * sizeof(float));
    memcpy(o.grad, m->params.grad, m->params.total * sizeof(float));
    da_tape_free(&t);
    free(x); free(txt); free(r);
    return o;
}

/* Default config: output shape, and the same bits with 1 and 2 threads for
 * the embeddings, the loss, every parameter gradient and the image gradient. */
static void test_clip_default_threads(void **state)
{
    (void)state;
    da_clip_config cfg = da_clip_config_default();
    da_clip *m = da_clip_create(&cfg, 1);
    assert_non_null(m);
    da_rng rng;
    da_rng_seed(&rng, 4);
    da_clip_init(m, &rng);
    assert_true(fabsf(*da_params_get(&m->params, "logit_scale") - logf(1.0f / 0.07f)) < 1e-6f);
    enum { B = 4 };
    float *images = tu_alloc_fill((size_t)B * 3 * 32 * 32, 61u, -1.0f, 1.0f);
    int saved = da_get_threads();
    da_set_threads(1);
    run_out a = run_default(m, images, B);
    da_set_threads(2);
    run_out b = run_default(m, images, B);
    da_set_threads(saved);
    tu_assert_bits("embeddings, 1 vs 2 threads", a.emb, b.emb, (size_t)B * 128);
    tu_assert_bits("loss, 1 vs 2 threads", &a.loss, &b.loss, 1);
    tu_assert_bits("parameter grads, 1 vs 2 threads", a.grad, b.grad, m->params.total);
    tu_assert_bits("image grads, 1 vs 2 threads", a.dimages, b.dimages, (size_t)B * 3 * 32 * 32);
    assert_true(isfinite(a.loss) && tu_max_abs(a.grad, m->params.total) > 0.0f);
    free(a.emb); free(a.grad); free(a.dimages);
    free(b.emb); free(b.grad); free(b.dimages);
    free(images);
    da_clip_free(m);
}

/* ------------------------------------------------------------------------ */

/* 30 AdamW steps of joint contrastive training (small text encoder + small
 * image tower) on 8 fixed random caption/image pairs: the InfoNCE loss must
 * fall well below its start (~log 8 = 2.08 for unrelated embeddings). */
static void test_clip_loss_falls(void **state)
{
    (void)state;
    da_clip_config icfg = oracle_config();
    da_text_config tcfg = {.vocab_size = 20, .context = 24, .d_model = 32, .n_layers = 2,
                           .n_heads = 4, .mlp_ratio = 4, .proj_dim = 16};
    da_clip *im = da_clip_create(&icfg, 1);
    da_text_encoder *tx = da_text_encoder_create(&tcfg, 1);
    da_rng rng;
    da_rng_seed(&rng, 7);
    da_clip_init(im, &rng);
    da_text_encoder_init(tx, &rng);
    enum { B = 8, T = 8 };
    float *images = tu_alloc_fill((size_t)B * 3 * 32 * 32, 71u, -1.0f, 1.0f);
    float *u = tu_alloc_fill((size_t)B * T, 72u, 0.0f, 1.0f);
    int ids[B * T], eos[B];
    uint8_t keep[B * T];
    for (int b = 0; b < B; b++) {
        int len = 3 + b % 6;
        for (int j = 0; j < T; j++) {
            ids[b * T + j] = j == 0 ? 1 : j == len - 1 ? 2 : j < len ? 3 + (int)(u[b * T + j] * 17) : 0;
            keep[b * T + j] = j < len;
        }
        eos[b] = len - 1;
    }
    size_t ni = im->params.total, nt = tx->params.total;
    float *m1 = calloc(ni, sizeof(float)), *v1 = calloc(ni, sizeof(float));
    float *m2 = calloc(nt, sizeof(float)), *v2 = calloc(nt, sizeof(float));
    da_adamw opt = {.lr = 2e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
    da_tape t;
    da_tape_init(&t, 1 << 22);
    float first = 0.0f, last = 0.0f;
    int ishape[4] = {B, 3, 32, 32};
    for (long step = 1; step <= 30; step++) {
        da_tape_reset(&t);
        da_params_zero_grad(&im->params);
        da_params_zero_grad(&tx->params);
        da_tensor *img = da_clip_image_forward(&t, im, da_leaf(&t, images, NULL, 4, ishape));
        da_tensor *feats = da_text_encoder_forward(&t, tx, ids, keep, B, T);
        da_tensor *txt = da_text_encoder_pool(&t, tx, feats, eos);
        da_tensor *loss = da_clip_loss(&t, img, txt, da_clip_logit_scale(&t, im));
        if (step == 1) first = loss->data[0];
        last = loss->data[0];
        da_tape_backward(&t, loss);
        da_adamw_step(im->params.data, im->params.grad, m1, v1, ni, step, &opt);
        da_adamw_step(tx->params.data, tx->params.grad, m2, v2, nt, step, &opt);
    }
    if (getenv("DA_TEST_VERBOSE")) printf("  InfoNCE: %.4f -> %.4f after 30 steps\n", first, last);
    assert_true(first > 1.5f && first < 3.0f);  /* random init: near log 8 */
    if (!(last < 0.5f * first)) fail_msg("InfoNCE did not fall: %g -> %g", first, last);
    da_tape_free(&t);
    free(m1); free(v1); free(m2); free(v2); free(images); free(u);
    da_clip_free(im);
    da_text_encoder_free(tx);
}

/* CLIPScore = 100 * max(cos, 0): known angles */
static void test_clip_score(void **state)
{
    (void)state;
    const float img[8] = {1, 0, 2, 0, 1, 1, 3, 0};
    const float txt[8] = {2, 0, 0, 5, -1, -1, 1, 1.7320508f};  /* 0, 90, 180, 60 degrees */
    float s[4], c[4];
    da_clip_score(s, img, txt, 4, 2);
    da_clip_cosine(c, img, txt, 4, 2);
    const float ws[4] = {100, 0, 0, 50}, wc[4] = {1, 0, -1, 0.5f};
    tu_assert_close("clip score", s, ws, 4, 1e-4, 0.0);  /* float rounding of sqrt(3) */
    tu_assert_close("cosine", c, wc, 4, 1e-6, 0.0);
}

/* ------------------------------------------------------------------------ */

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static void test_clip_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/dalign_clip_XXXXXX", cp[64], wp[64];
    assert_non_null(mkdtemp(dir));
    snprintf(cp, sizeof cp, "%s/clip.json", dir);
    snprintf(wp, sizeof wp, "%s/clip.safetensors", dir);
    da_clip_config c = da_clip_config_default(), back;
    memset(&back, 0, sizeof back);
    assert_int_equal(da_clip_config_save(&c, cp), DA_OK);
    assert_int_equal(da_clip_config_load(&back, cp), DA_OK);
    assert_memory_equal(&c, &back, sizeof c);
    const char *bad[] = {
        "{\"image_size\": 32, \"in_channels\": 3, \"channels\": [32, 64], \"groups\": 8}",
        "{\"image_size\": 32, \"in_channels\": 3, \"channels\": [32, 60], \"groups\": 8, \"embed_dim\": 16}",
        "{\"image_size\": 32, \"in_channels\": 3, \"channels\": [], \"groups\": 8, \"embed_dim\": 16}",
        "{\"image_size\": 32, \"in_channels\": 3, \"channels\": [8,8,8,8,8,8,8,8], \"groups\": 8, \"embed_dim\": 16}",
        "{\"image_size\": 32, \"in_channels\": 3, \"channels\": 32, \"groups\": 8, \"embed_dim\": 16}",
        "{\"image_size\": 32, \"in_channels\": 3, \"channels\": [32], \"groups\": 8, \"embed_dim\": 16, \"depth\": 2}",
        "{\"image_size\": 0, \"in_channels\": 3, \"channels\": [32], \"groups\": 8, \"embed_dim\": 16}",
        "nonsense"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(cp, bad[i]);
        back = c;
        if (da_clip_config_load(&back, cp) == DA_OK) fail_msg("config %zu accepted: %s", i, bad[i]);
        assert_memory_equal(&c, &back, sizeof c);
    }
    /* a one-entry channels list is a valid tower with no stride-2 block */
    write_text(cp, "{\"image_size\": 8, \"in_channels\": 3, \"channels\": [16], \"groups\": 8, \"embed_dim\": 4}");
    assert_int_equal(da_clip_config_load(&back, cp), DA_OK);
    assert_int_equal(back.n_blocks, 0);

    da_clip_config small = oracle_config();
    da_clip *a = da_clip_create(&small, 0), *b = da_clip_create(&small, 0);
    da_rng rng;
    da_rng_seed(&rng, 8);
    da_clip_init(a, &rng);
    assert_int_equal(da_clip_save(a, wp), DA_OK);
    assert_int_equal(da_clip_load(b, wp), DA_OK);
    tu_assert_bits("weights round trip", b->params.data, a->params.data, a->params.total);
    da_clip *d = da_clip_create(&c, 0);  /* default widths: shapes differ */
    assert_int_not_equal(da_clip_load(d, wp), DA_OK);
    assert_non_null(strstr(da_last_error(), "visual.conv_in.weight"));
    da_clip_free(d);

    da_tape t;
    da_tape_init(&t, 1 << 20);
    float img[2 * 3 * 16 * 16] = {0};
    int bad_shape[4] = {2, 3, 16, 16};
    assert_null(da_clip_image_forward(&t, a, da_leaf(&t, img, NULL, 4, bad_shape)));
    assert_non_null(strstr(da_last_error(), "32"));
    assert_null(da_clip_image_forward(&t, a, NULL));
    /* loss and normalize: embeddings of one shape (B, E), a scalar scale */
    int e2[2] = {2, 8}, e3[2] = {3, 8}, e4[2] = {2, 4}, x3[3] = {2, 2, 4};
    da_tensor *ls = da_clip_logit_scale(&t, a), *emb = da_leaf(&t, img, NULL, 2, e2);
    assert_null(da_clip_loss(&t, emb, da_leaf(&t, img, NULL, 2, e3), ls));
    assert_non_null(strstr(da_last_error(), "clip loss"));
    assert_null(da_clip_loss(&t, emb, da_leaf(&t, img, NULL, 2, e4), ls));
    assert_null(da_clip_loss(&t, emb, da_leaf(&t, img, NULL, 3, x3), ls));
    assert_null(da_clip_loss(&t, emb, emb, emb));   /* logit_scale not a scalar */
    assert_null(da_clip_loss(&t, emb, NULL, ls));
    assert_null(da_clip_normalize(&t, da_leaf(&t, img, NULL, 3, x3)));
    assert_non_null(da_clip_loss(&t, emb, emb, ls));
    da_tape_free(&t);
    da_clip_config wrong = small;
    wrong.channels[2] = 10;  /* not divisible by 4 groups */
    assert_null(da_clip_create(&wrong, 0));
    da_clip_free(a);
    da_clip_free(b);
    remove(cp);
    remove(wp);
    rmdir(dir);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip_vs_torch),
        cmocka_unit_test(test_clip_loss_vs_torch),
        cmocka_unit_test(test_clip_gradcheck),
        cmocka_unit_test(test_clip_normalize_zero_row),
        cmocka_unit_test(test_clip_default_threads),
        cmocka_unit_test(test_clip_loss_falls),
        cmocka_unit_test(test_clip_score),
        cmocka_unit_test(test_clip_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
