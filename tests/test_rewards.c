/* Rewards, the synthetic rater and the synthetic pairs: known answers
 * (colourfulness by hand, JPEG size growing with noise, faithfulness 1 on
 * ground truth and lower on a wrong caption, 0 for an unparsable prompt,
 * outline 1 on outline renders and 0 on plain ones and on empty images),
 * batched == one by one for every reward, clip and pref from small random
 * models in a temp directory (the CLIPScore ranking test uses the shipped
 * CLIP towers in weights/), PNG
 * loading, the rater's terms, Bradley-Terry labels, ties and determinism,
 * and the errors (unknown reward, missing file or weights, wrong size). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

static void flat(float *img, float r, float g, float b)
{
    const int HW = DA_IMG * DA_IMG;
    for (int p = 0; p < HW; p++) {
        img[p] = r;
        img[HW + p] = g;
        img[2 * HW + p] = b;
    }
}

/* a scene of one object, placed by hand */
static void one_object(da_scene *s, int colour, int shape, int size, int x, int y, int d, int bg)
{
    memset(s, 0, sizeof *s);
    s->n_objects = 1;
    s->obj[0] = (da_object){.colour = colour, .shape = shape, .size = size, .x = x, .y = y, .d = d};
    s->relation = DA_ANY;
    s->background = bg;
}

static da_reward *make_reward(const char *name, const char *dir)
{
    da_reward *r = NULL;
    if (da_reward_create(&r, name, dir) != DA_OK) fail_msg("create %s: %s", name, da_last_error());
    return r;
}

/* ------------------------------------------------------------------------ */
/* colourfulness and JPEG                                                   */
/* ------------------------------------------------------------------------ */

/* Any grey flat image scores exactly 0 (rg = yb = 0 everywhere). A flat red
 * image (255, 0, 0) has no spread: M = 0.3 sqrt(255^2 + 127.5^2). Half red,
 * half blue (0, 0, 255): rg is 255 or 0 (mean 127.5, sd 127.5), yb is 127.5
 * or -255 (mean -63.75, sd 191.25), so M = sqrt(127.5^2 + 191.25^2) +
 * 0.3 sqrt(127.5^2 + 63.75^2) = 272.62. The sums run in double over exact
 * multiples of 0.5: only the final float rounding differs (1e-4 relative). */
static void test_colorfulness_known(void **state)
{
    (void)state;
    float img[DA_IMG_FLOATS];
    const float greys[3] = {0.0f, 0.5f, 1.0f};
    for (int i = 0; i < 3; i++) {
        flat(img, greys[i], greys[i], greys[i]);
        assert_true(da_colorfulness(img, DA_IMG, DA_IMG) == 0.0f);
    }
    flat(img, 1.0f, 0.0f, 0.0f);
    double want = 0.3 * sqrt(255.0 * 255.0 + 127.5 * 127.5);
    assert_true(fabs(da_colorfulness(img, DA_IMG, DA_IMG) - want) < 1e-4 * want);
    const int HW = DA_IMG * DA_IMG;
    for (int p = 0; p < HW; p++) {
        int red = (p % DA_IMG) < DA_IMG / 2;
        img[p] = red ? 1.0f : 0.0f;
        img[HW + p] = 0.0f;
        img[2 * HW + p] = red ? 0.0f : 1.0f;
    }
    want = sqrt(127.5 * 127.5 + 191.25 * 191.25) + 0.3 * sqrt(127.5 * 127.5 + 63.75 * 63.75);
    float got = da_colorfulness(img, DA_IMG, DA_IMG);
    if (fabs(got - want) > 1e-4 * want) fail_msg("two-colour image: %g, by hand %g", got, want);
    /* values outside [0, 1] are clamped first: 2.0 reads as 1.0 */
    for (int p = 0; p < HW; p++) img[p] *= 2.0f;
    assert_true(fabsf(da_colorfulness(img, DA_IMG, DA_IMG) - got) == 0.0f);
}

/* JPEG size at quality 95 grows with the amount of noise (each sigma step
 * adds bits the DCT cannot drop); a flat image is the smallest. */
static void test_jpeg_grows_with_noise(void **state)
{
    (void)state;
    da_rng rng;
    da_rng_seed(&rng, 2);
    da_scene s;
    float base[DA_IMG_FLOATS], img[DA_IMG_FLOATS], eps[DA_IMG_FLOATS];
    assert_int_equal(da_world_example(&rng, DA_SPLIT_TRAIN, &s, base, NULL, 0), DA_OK);
    da_randn(&rng, eps, DA_IMG_FLOATS);
    flat(img, 0.5f, 0.5f, 0.5f);
    float prev = 0.0f;
    assert_int_equal(da_jpeg_kb(img, DA_IMG, DA_IMG, &prev), DA_OK);
    assert_true(prev > 0.1f && prev < 1.0f);  /* headers alone are a few hundred bytes */
    const float sigmas[5] = {0.0f, 0.02f, 0.05f, 0.1f, 0.2f};
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < DA_IMG_FLOATS; i++) img[i] = base[i] + sigmas[k] * eps[i];
        float kb;
        assert_int_equal(da_jpeg_kb(img, DA_IMG, DA_IMG, &kb), DA_OK);
        if (!(kb > prev)) fail_msg("JPEG size %g kB at sigma %g is not above %g kB", kb, sigmas[k], prev);
        prev = kb;
    }
    /* the reward interface: jpeg = size, jpeg-neg = -size */
    da_reward *j = make_reward("jpeg", NULL), *n = make_reward("jpeg-neg", NULL);
    float a, b;
    assert_int_equal(da_reward_score(j, img, NULL, 1, &a), DA_OK);
    assert_int_equal(da_reward_score(n, img, NULL, 1, &b), DA_OK);
    assert_true(a == prev && b == -prev);
    assert_int_equal(da_jpeg_kb(img, 0, DA_IMG, &a), DA_ERR_INVALID);
    da_reward_free(j);
    da_reward_free(n);
}

/* ------------------------------------------------------------------------ */
/* faithfulness                                                             */
/* ------------------------------------------------------------------------ */

/* Ground-truth renders with their own captions score 1; the canonical caption
 * with one colour word swapped scores (n - 1)/n of its n clauses; a prompt
 * that does not parse scores 0 (and is not an error). */
static void test_faithful_reward(void **state)
{
    (void)state;
    enum { N = 40 };
    da_rng rng;
    da_rng_seed(&rng, 3);
    float *imgs = malloc((size_t)N * DA_IMG_FLOATS * sizeof(float)), scores[N], wrong_scores[N];
    char caps[N][DA_CAPTION_MAX], wrong[N][DA_CAPTION_MAX];
    const char *p[N], *w[N];
    float expect_wrong[N];
    for (int i = 0; i < N; i++) {
        da_scene s;
        assert_int_equal(da_world_example(&rng, DA_SPLIT_TRAIN, &s, imgs + (size_t)i * DA_IMG_FLOATS, caps[i],
                                          DA_CAPTION_MAX), DA_OK);
        da_scene bad = s;
        bad.obj[0].colour = (bad.obj[0].colour + 1) % DA_N_COLOURS;
        if (bad.n_objects == 2 && bad.obj[0].colour == bad.obj[1].colour && bad.obj[0].shape == bad.obj[1].shape)
            bad.obj[0].colour = (bad.obj[0].colour + 1) % DA_N_COLOURS;
        assert_int_equal(da_world_caption(NULL, &bad, wrong[i], DA_CAPTION_MAX), DA_OK);  /* all clauses stated */
        int clauses = 3 * bad.n_objects + (bad.n_objects == 2) + 1;
        expect_wrong[i] = (float)(clauses - 1) / (float)clauses;
        p[i] = caps[i];
        w[i] = wrong[i];
    }
    da_reward *r = make_reward("faithful", NULL);
    assert_true(da_reward_needs_prompt(r));
    assert_string_equal(da_reward_name(r), "faithful");
    assert_int_equal(da_reward_score(r, imgs, p, N, scores), DA_OK);
    assert_int_equal(da_reward_score(r, imgs, w, N, wrong_scores), DA_OK);
    for (int i = 0; i < N; i++) {
        if (scores[i] != 1.0f) fail_msg("image %d with its caption '%s': %g", i, caps[i], scores[i]);
        if (fabsf(wrong_scores[i] - expect_wrong[i]) > 1e-6f)  /* one float division */
            fail_msg("image %d with '%s': %g, want %g", i, wrong[i], wrong_scores[i], expect_wrong[i]);
    }
    const char *junk[3] = {"a purpel circle", "", "red circle blue"};
    for (int k = 0; k < 3; k++) {
        float v = -1.0f;
        assert_int_equal(da_reward_score(r, imgs, &junk[k], 1, &v), DA_OK);
        if (v != 0.0f) fail_msg("unparsable prompt '%s' scored %g", junk[k], v);
    }
    /* a prompt-needing reward refuses a missing prompt */
    assert_int_equal(da_reward_score(r, imgs, NULL, 1, scores), DA_ERR_INVALID);
    const char *nullp[1] = {NULL};
    assert_int_equal(da_reward_score(r, imgs, nullp, 1, scores), DA_ERR_INVALID);
    da_reward_free(r);
    free(imgs);
}

/* ------------------------------------------------------------------------ */
/* clip and pref from small random models                                   */
/* ------------------------------------------------------------------------ */

static void path_in(char *out, size_t cap, const char *dir, const char *file)
{
    snprintf(out, cap, "%s/%s", dir, file);
}

/* text_encoder.{json,safetensors}, clip.{json,safetensors} and
 * reward_net.{json,safetensors}: small random models */
static void write_small_models(const char *dir)
{
    char p[256];
    da_rng rng;
    da_rng_seed(&rng, 11);
    da_text_config tc = {.vocab_size = da_vocab_size(), .context = 24, .d_model = 16, .n_layers = 1,
                         .n_heads = 2, .mlp_ratio = 2, .proj_dim = 8};
    da_text_encoder *te = da_text_encoder_create(&tc, 0);
    da_text_encoder_init(te, &rng);
    path_in(p, sizeof p, dir, "text_encoder.json");
    assert_int_equal(da_text_config_save(&tc, p), DA_OK);
    path_in(p, sizeof p, dir, "text_encoder.safetensors");
    assert_int_equal(da_text_encoder_save(te, p), DA_OK);
    da_clip_config cc = {.image_size = 32, .in_channels = 3, .n_blocks = 2, .channels = {8, 8, 8},
                         .groups = 4, .embed_dim = 8};
    da_clip *cl = da_clip_create(&cc, 0);
    da_clip_init(cl, &rng);
    path_in(p, sizeof p, dir, "clip.json");
    assert_int_equal(da_clip_config_save(&cc, p), DA_OK);
    path_in(p, sizeof p, dir, "clip.safetensors");
    assert_int_equal(da_clip_save(cl, p), DA_OK);
    da_reward_net_config rc = {.image_size = 32, .n_blocks = 2, .channels = {8, 8, 8}, .groups = 4,
                               .vocab_size = da_vocab_size(), .context = 24, .embed_dim = 4, .text_dim = 8,
                               .hidden = 8};
    da_reward_net *rn = da_reward_net_create(&rc, 0);
    da_reward_net_init(rn, &rng);
    path_in(p, sizeof p, dir, "reward_net.json");
    assert_int_equal(da_reward_net_config_save(&rc, p), DA_OK);
    path_in(p, sizeof p, dir, "reward_net.safetensors");
    assert_int_equal(da_reward_net_save(rn, p), DA_OK);
    da_text_encoder_free(te);
    da_clip_free(cl);
    da_reward_net_free(rn);
}

static void remove_small_models(const char *dir)
{
    const char *files[] = {"text_encoder.json", "text_encoder.safetensors", "clip.json", "clip.safetensors",
                           "reward_net.json", "reward_net.safetensors"};
    char p[256];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        path_in(p, sizeof p, dir, files[i]);
        remove(p);
    }
    rmdir(dir);
}

/* CLIPScore of one image by hand from the towers of dir */
static float clip_by_hand(const char *dir, const float *img, const char *prompt)
{
    char p[256];
    da_text_config tc;
    da_clip_config cc;
    path_in(p, sizeof p, dir, "text_encoder.json");
    assert_int_equal(da_text_config_load(&tc, p), DA_OK);
    path_in(p, sizeof p, dir, "clip.json");
    assert_int_equal(da_clip_config_load(&cc, p), DA_OK);
    da_text_encoder *te = da_text_encoder_create(&tc, 0);
    da_clip *cl = da_clip_create(&cc, 0);
    path_in(p, sizeof p, dir, "text_encoder.safetensors");
    assert_int_equal(da_text_encoder_load(te, p), DA_OK);
    path_in(p, sizeof p, dir, "clip.safetensors");
    assert_int_equal(da_clip_load(cl, p), DA_OK);
    int ids[DA_MAX_TOKENS], eos;
    uint8_t keep[DA_MAX_TOKENS];
    da_tokenize(prompt, ids, keep, NULL);
    assert_int_equal(da_text_eos_positions(&eos, keep, 1, DA_MAX_TOKENS), DA_OK);
    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_tensor *txt = da_text_encoder_pool(&t, te, da_text_encoder_forward(&t, te, ids, keep, 1, DA_MAX_TOKENS), &eos);
    float x[DA_IMG_FLOATS];
    for (int i = 0; i < DA_IMG_FLOATS; i++) x[i] = 2.0f * img[i] - 1.0f;
    int shape[4] = {1, 3, DA_IMG, DA_IMG};
    da_tensor *emb = da_clip_image_forward(&t, cl, da_leaf(&t, x, NULL, 4, shape));
    float s;
    da_clip_score(&s, emb->data, txt->data, 1, cc.embed_dim);
    da_tape_free(&t);
    da_text_encoder_free(te);
    da_clip_free(cl);
    return s;
}

/* Every reward: a batch of 40 (more than one network chunk of 32) scores the
 * same as each image alone. Per-image rewards: bit for bit. Networks: GEMMs
 * over a different number of rows may group their sums differently inside
 * OpenBLAS, so 1e-5 of the score's scale (a few f32 ulp of O(1) values);
 * a mixed-up image or prompt is off by O(1). Also: clip equals CLIPScore
 * computed by hand from the same towers, and pref equals the model's forward. */
static void test_batched_equals_single(void **state)
{
    (void)state;
    char dir[] = "/tmp/dalign_rewards_XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_small_models(dir);
    enum { N = 40 };
    da_rng rng;
    da_rng_seed(&rng, 5);
    float *imgs = malloc((size_t)N * DA_IMG_FLOATS * sizeof(float));
    char caps[N][DA_CAPTION_MAX];
    const char *p[N];
    for (int i = 0; i < N; i++) {
        float other[DA_IMG_FLOATS];
        assert_int_equal(da_synth_pair(&rng, DA_SPLIT_TRAIN, imgs + (size_t)i * DA_IMG_FLOATS, other, caps[i],
                                       DA_CAPTION_MAX), DA_OK);
        p[i] = caps[i];
    }
    const char *names[] = {"faithful", "jpeg", "jpeg-neg", "colorful", "clip", "pref", "outline"};
    for (int k = 0; k < 7; k++) {
        da_reward *r = make_reward(names[k], dir);
        float all[N], one[N];
        assert_int_equal(da_reward_score(r, imgs, p, N, all), DA_OK);
        for (int i = 0; i < N; i++)
            assert_int_equal(da_reward_score(r, imgs + (size_t)i * DA_IMG_FLOATS, p + i, 1, &one[i]), DA_OK);
        char what[64];
        snprintf(what, sizeof what, "reward %s, batched vs one by one", names[k]);
        if (k < 4 || k == 6) {   /* the image-only rewards and faithfulness */
            tu_assert_bits(what, all, one, N);
        } else {
            float scale = fmaxf(1.0f, fabsf(all[0]));
            tu_assert_close(what, all, one, N, 1e-5 * scale, 0.0);
        }
        if (k == 4) {
            float s = clip_by_hand(dir, imgs, p[0]);
            assert_true(all[0] >= 0.0f && all[0] <= 100.0f);
            tu_assert_close("clip reward vs CLIPScore by hand", all, &s, 1, 1e-4, 1e-5);  /* same ops, same order */
        }
        if (k == 5) {
            da_reward_net_config c;
            char path[256];
            path_in(path, sizeof path, dir, "reward_net.json");
            assert_int_equal(da_reward_net_config_load(&c, path), DA_OK);
            da_reward_net *m = da_reward_net_create(&c, 0);
            path_in(path, sizeof path, dir, "reward_net.safetensors");
            assert_int_equal(da_reward_net_load(m, path), DA_OK);
            int ids[DA_MAX_TOKENS];
            uint8_t keep[DA_MAX_TOKENS];
            da_tokenize(p[0], ids, keep, NULL);
            da_tape t;
            da_tape_init(&t, 1 << 20);
            int shape[4] = {1, 3, DA_IMG, DA_IMG};
            da_tensor *o = da_reward_net_forward(&t, m, da_leaf(&t, imgs, NULL, 4, shape), ids, keep, DA_MAX_TOKENS);
            tu_assert_bits("pref reward vs the model's forward", &one[0], o->data, 1);
            da_tape_free(&t);
            da_reward_net_free(m);
        }
        da_reward_free(r);
    }
    free(imgs);
    remove_small_models(dir);
}

/* With the shipped CLIP towers, CLIPScore ranks an image's own caption over
 * the same caption with one colour changed. The towers ship in weights/:
 * missing ones are a failure, not a skip. */
static void test_clip_ranks_captions(void **state)
{
    (void)state;
    const char *dir = da_weights_dir(NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/clip.safetensors", dir);
    if (access(p, R_OK) != 0) fail_msg("%s missing: the shipped CLIP towers are part of the repository", p);
    da_reward *r = make_reward("clip", dir);
    enum { N = 64 };
    da_rng rng;
    da_rng_seed(&rng, 6);
    int better = 0;
    for (int i = 0; i < N; i++) {
        da_scene s;
        float img[DA_IMG_FLOATS];
        char right[DA_CAPTION_MAX], wrong[DA_CAPTION_MAX];
        assert_int_equal(da_world_example(&rng, DA_SPLIT_TRAIN, &s, img, NULL, 0), DA_OK);
        assert_int_equal(da_world_caption(NULL, &s, right, sizeof right), DA_OK);
        s.obj[0].colour = (s.obj[0].colour + 1 + (int)(da_rng_u32(&rng) % (DA_N_COLOURS - 1))) % DA_N_COLOURS;
        assert_int_equal(da_world_caption(NULL, &s, wrong, sizeof wrong), DA_OK);
        float imgs2[2 * DA_IMG_FLOATS], sc[2];
        memcpy(imgs2, img, sizeof img);
        memcpy(imgs2 + DA_IMG_FLOATS, img, sizeof img);
        const char *ps[2] = {right, wrong};
        assert_int_equal(da_reward_score(r, imgs2, ps, 2, sc), DA_OK);
        better += sc[0] > sc[1];
    }
    /* a trained CLIP tells colours apart almost always; chance is 1/2 */
    if (better < (int)(0.8 * N)) fail_msg("CLIPScore preferred the right caption on %d of %d images", better, N);
    if (getenv("DA_TEST_VERBOSE")) fprintf(stderr, "clip ranking: right caption first on %d of %d images\n", better, N);
    da_reward_free(r);
}

/* The outline reward is the outline detector's score: every scene drawn in
 * the outline style scores 1 and drawn plain 0 (as da_outline_score, bit
 * for bit), an image with no object 0; it needs no prompt. Values outside
 * [0, 1] are clamped first, as saving the image would. */
static void test_outline_reward(void **state)
{
    (void)state;
    enum { N = 24 };
    da_rng rng;
    da_rng_seed(&rng, 11);
    float *imgs = malloc((size_t)2 * N * DA_IMG_FLOATS * sizeof(float)), scores[2 * N];   /* N outline, N plain */
    assert_non_null(imgs);
    for (int i = 0; i < N; i++) {
        da_scene s;
        assert_int_equal(da_world_sample(&rng, i % 2 ? DA_SPLIT_HELDOUT : DA_SPLIT_TRAIN, &s), DA_OK);
        assert_int_equal(da_world_render_style(&s, DA_STYLE_OUTLINE, imgs + (size_t)i * DA_IMG_FLOATS), DA_OK);
        assert_int_equal(da_world_render_style(&s, DA_STYLE_PLAIN, imgs + (size_t)(N + i) * DA_IMG_FLOATS), DA_OK);
    }
    da_reward *r = make_reward("outline", "/nonexistent/weights");   /* no weights needed */
    assert_string_equal(da_reward_name(r), "outline");
    assert_false(da_reward_needs_prompt(r));
    assert_int_equal(da_reward_score(r, imgs, NULL, 2 * N, scores), DA_OK);
    for (int i = 0; i < 2 * N; i++) {
        float want;
        assert_int_equal(da_outline_score(imgs + (size_t)i * DA_IMG_FLOATS, &want, NULL), DA_OK);
        tu_assert_bits("outline reward = da_outline_score", &scores[i], &want, 1);
        if (scores[i] != (i < N ? 1.0f : 0.0f)) fail_msg("%s render %d scores %g", i < N ? "outline" : "plain", i % N,
                                                        (double)scores[i]);
    }
    float img[DA_IMG_FLOATS], s = -1.0f;
    flat(img, 1.0f, 1.0f, 1.0f);   /* white: no object, nothing judged */
    assert_int_equal(da_reward_score(r, img, NULL, 1, &s), DA_OK);
    assert_true(s == 0.0f);
    /* an outline render pushed past [0, 1] scores as the saved image does */
    memcpy(img, imgs, sizeof img);
    for (int i = 0; i < DA_IMG_FLOATS; i++) img[i] = img[i] > 0.5f ? img[i] + 0.5f : img[i] - 0.5f;
    float saved[DA_IMG_FLOATS], want;
    for (int i = 0; i < DA_IMG_FLOATS; i++) saved[i] = img[i] > 1.0f ? 1.0f : img[i] < 0.0f ? 0.0f : img[i];
    assert_int_equal(da_reward_score(r, img, NULL, 1, &s), DA_OK);
    assert_int_equal(da_outline_score(saved, &want, NULL), DA_OK);
    tu_assert_bits("outline reward of a clamped image", &s, &want, 1);
    da_reward_free(r);
    free(imgs);
}

/* ------------------------------------------------------------------------ */
/* errors and PNG loading                                                   */
/* ------------------------------------------------------------------------ */

static void test_reward_errors(void **state)
{
    (void)state;
    da_reward *r = (da_reward *)1;
    assert_int_equal(da_reward_create(&r, "aesthetic", NULL), DA_ERR_INVALID);
    assert_null(r);
    assert_non_null(strstr(da_last_error(), "aesthetic"));
    assert_non_null(strstr(da_last_error(), DA_REWARD_NAMES));
    assert_int_equal(da_reward_create(&r, "rater", NULL), DA_ERR_INVALID);  /* the rater is no reward */
    assert_int_equal(da_reward_create(&r, "clip", "/nonexistent/weights"), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "/nonexistent/weights/text_encoder.json"));
    assert_int_equal(da_reward_create(&r, "pref", "/nonexistent/weights"), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "/nonexistent/weights/reward_net.json"));
    /* image-only rewards need no prompt and no weights */
    r = make_reward("colorful", "/nonexistent/weights");
    assert_false(da_reward_needs_prompt(r));
    float img[DA_IMG_FLOATS], s = -1.0f;
    flat(img, 0.2f, 0.2f, 0.2f);
    assert_int_equal(da_reward_score(r, img, NULL, 1, &s), DA_OK);
    assert_true(s == 0.0f);
    assert_int_equal(da_reward_score(r, img, NULL, -1, &s), DA_ERR_INVALID);
    assert_int_equal(da_reward_score(r, img, NULL, 0, &s), DA_OK);
    da_reward_free(r);
}

static void test_image_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/dalign_png_XXXXXX", ok[64], big[64], grey[64], junk[64], missing[64];
    assert_non_null(mkdtemp(dir));
    snprintf(ok, sizeof ok, "%s/ok.png", dir);
    snprintf(big, sizeof big, "%s/big.png", dir);
    snprintf(grey, sizeof grey, "%s/grey.png", dir);
    snprintf(junk, sizeof junk, "%s/junk.png", dir);
    snprintf(missing, sizeof missing, "%s/missing.png", dir);
    uint8_t rgb[64 * 64 * 3];
    for (int i = 0; i < 64 * 64 * 3; i++) rgb[i] = (uint8_t)(i * 7);
    assert_true(stbi_write_png(ok, DA_IMG, DA_IMG, 3, rgb, DA_IMG * 3));
    assert_true(stbi_write_png(big, 64, 64, 3, rgb, 64 * 3));
    assert_true(stbi_write_png(grey, DA_IMG, DA_IMG, 1, rgb, DA_IMG));
    FILE *f = fopen(junk, "w");
    fputs("not a png", f);
    fclose(f);

    float img[DA_IMG_FLOATS];
    const int HW = DA_IMG * DA_IMG;
    assert_int_equal(da_image_load(ok, img), DA_OK);
    for (int p = 0; p < HW; p++)
        for (int c = 0; c < 3; c++)
            if (img[c * HW + p] != (float)rgb[p * 3 + c] / 255.0f) fail_msg("pixel %d channel %d differs", p, c);
    assert_int_equal(da_image_load(grey, img), DA_OK);
    for (int p = 0; p < HW; p++)
        for (int c = 0; c < 3; c++) assert_true(img[c * HW + p] == (float)rgb[p] / 255.0f);
    assert_int_equal(da_image_load(big, img), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "64x64"));
    assert_non_null(strstr(da_last_error(), "32x32"));
    assert_int_equal(da_image_load(missing, img), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "missing.png"));
    assert_int_equal(da_image_load(junk, img), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), "junk.png"));
    remove(ok); remove(big); remove(grey); remove(junk);
    rmdir(dir);
}

/* ------------------------------------------------------------------------ */
/* the rater                                                                */
/* ------------------------------------------------------------------------ */

/* A red 14-px square centred on white (box 9..22, centroid 16, 16): size
 * sqrt(196)/16, centring 1, contrast |luma(red) - 1| with luma(230, 25, 25)
 * by Rec. 601; faithfulness 1 for its caption. The same square in a corner
 * keeps size and contrast and loses centring. Sums of ~200 exact values in
 * double: 1e-5 covers the final float rounding. */
static void test_rater_terms(void **state)
{
    (void)state;
    da_rater_config c = da_rater_config_default();
    da_scene s;
    float img[DA_IMG_FLOATS];
    one_object(&s, DA_RED, DA_SQUARE, DA_LARGE, 9, 9, 14, DA_BG_WHITE);
    assert_int_equal(da_world_render(&s, img), DA_OK);
    da_rater_terms t;
    assert_int_equal(da_rater_utility(&c, img, "a large red square on a white background", &t), DA_OK);
    float lr = (0.299f * 230 + 0.587f * 25 + 0.114f * 25) / 255.0f;
    assert_true(t.parsed && t.faith == 1.0f);
    assert_true(fabsf(t.size - 14.0f / 16.0f) < 1e-5f);
    assert_true(fabsf(t.centre - 1.0f) < 1e-5f);
    assert_true(fabsf(t.contrast - (1.0f - lr)) < 1e-5f);
    float u = c.w_faith + c.w_size * t.size + c.w_centre * t.centre + c.w_contrast * t.contrast;
    assert_true(fabsf(t.utility - u) < 1e-5f);
    /* corner: centroid at (8, 8), 8 sqrt 2 from the centre */
    one_object(&s, DA_RED, DA_SQUARE, DA_LARGE, 1, 1, 14, DA_BG_WHITE);
    assert_int_equal(da_world_render(&s, img), DA_OK);
    da_rater_terms t2;
    assert_int_equal(da_rater_utility(&c, img, "a large red square on a white background", &t2), DA_OK);
    assert_true(fabsf(t2.centre - (1.0f - 8.0f * sqrtf(2.0f) / 16.0f)) < 1e-5f);
    assert_true(t2.size == t.size && fabsf(t2.contrast - t.contrast) < 1e-6f);
    /* an unparsable prompt: faithfulness 0, the taste terms remain */
    assert_int_equal(da_rater_utility(&c, img, "a purpel square", &t2), DA_OK);
    assert_true(!t2.parsed && t2.faith == 0.0f && t2.size == t.size);
    /* an empty image: no objects, no taste */
    flat(img, 1.0f, 1.0f, 1.0f);
    assert_int_equal(da_rater_utility(&c, img, "a red square", &t2), DA_OK);
    assert_true(t2.faith == 0.0f && t2.size == 0.0f && t2.centre == 0.0f && t2.contrast == 0.0f);
    assert_int_equal(da_rater_utility(&c, img, NULL, &t2), DA_ERR_INVALID);
}

/* The noiseless rater prefers the ground-truth render to the same scene with
 * a wrong colour, shape or background, on 50 generated scenes. */
static void test_rater_prefers_ground_truth(void **state)
{
    (void)state;
    da_rater_config c = da_rater_config_default();
    da_rng rng;
    da_rng_seed(&rng, 7);
    for (int i = 0; i < 50; i++) {
        da_scene s;
        float gt[DA_IMG_FLOATS], bad[DA_IMG_FLOATS];
        char cap[DA_CAPTION_MAX];
        assert_int_equal(da_world_example(&rng, DA_SPLIT_TRAIN, &s, gt, NULL, 0), DA_OK);
        assert_int_equal(da_world_caption(NULL, &s, cap, sizeof cap), DA_OK);
        for (int kind = 0; kind < 3; kind++) {
            da_scene w = s;
            if (kind == 0) w.obj[0].colour = (w.obj[0].colour + 1) % DA_N_COLOURS;
            if (kind == 1) w.obj[0].shape = (w.obj[0].shape + 1) % DA_N_SHAPES;
            if (kind == 2) w.background = (w.background + 1) % DA_N_BACKGROUNDS;
            if (w.n_objects == 2 && w.obj[0].colour == w.obj[1].colour && w.obj[0].shape == w.obj[1].shape)
                continue;  /* twins: the scene would not match its own kind of caption */
            assert_int_equal(da_world_render(&w, bad), DA_OK);
            da_rater_terms a, b;
            assert_int_equal(da_rater_utility(&c, gt, cap, &a), DA_OK);
            assert_int_equal(da_rater_utility(&c, bad, cap, &b), DA_OK);
            if (da_rater_label(&c, a.utility, b.utility, NULL) != 1)
                fail_msg("scene %d '%s', change %d: u(gt) %g vs u(wrong) %g", i, cap, kind, a.utility, b.utility);
        }
    }
}

/* Labels: ties inside the margin (with and without noise), the noiseless
 * sign, P(A > B) = sigmoid(du / T), label frequencies that follow it, and
 * the same labels from the same seed. */
static void test_rater_labels(void **state)
{
    (void)state;
    da_rater_config c = da_rater_config_default();
    da_rng rng, rng2;
    da_rng_seed(&rng, 1);
    assert_int_equal(da_rater_label(&c, 2.0f, 2.0f, NULL), 0);
    assert_int_equal(da_rater_label(&c, 2.0f, 2.0f + 0.5f * c.tie_margin, &rng), 0);
    assert_int_equal(da_rater_label(&c, 2.0f, 2.0f + 2.0f * c.tie_margin, NULL), -1);
    assert_int_equal(da_rater_label(&c, 2.0f + 2.0f * c.tie_margin, 2.0f, NULL), 1);
    float du = 0.3f, p = da_rater_prob(&c, 1.0f + du, 1.0f);
    assert_true(fabsf(p - 1.0f / (1.0f + expf(-du / c.temperature))) < 1e-6f);
    assert_true(fabsf(da_rater_prob(&c, 1.0f, 1.0f + du) - (1.0f - p)) < 1e-6f);
    /* 4000 labels at P = p: the frequency of "A" is within 4 standard
     * deviations (sqrt(p(1-p)/4000) ~ 0.007) of p */
    da_rng_seed(&rng, 2);
    int a_wins = 0;
    for (int i = 0; i < 4000; i++) a_wins += da_rater_label(&c, 1.0f + du, 1.0f, &rng) == 1;
    double freq = a_wins / 4000.0, sd = sqrt(p * (1.0 - p) / 4000.0);
    if (fabs(freq - p) > 4 * sd) fail_msg("label frequency %g, P %g", freq, (double)p);
    /* same seed, same labels; one draw per call, ties included */
    da_rng_seed(&rng, 3);
    da_rng_seed(&rng2, 3);
    for (int i = 0; i < 200; i++) {
        float ua = (float)(i % 7) * 0.1f, ub = (float)(i % 5) * 0.1f;
        assert_int_equal(da_rater_label(&c, ua, ub, &rng), da_rater_label(&c, ua, ub, &rng2));
    }
    assert_int_equal(da_rng_u32(&rng), da_rng_u32(&rng2));
    /* temperature 0: the noiseless choice even with an rng */
    c.temperature = 0.0f;
    for (int i = 0; i < 20; i++) assert_int_equal(da_rater_label(&c, 1.2f, 1.0f, &rng), 1);
}

/* Synthetic pairs: same seed, same pair; the two images differ; the prompt
 * parses; the noiseless rater agrees with its own noisy labels on most
 * non-tie pairs (the labels carry signal), and ties occur but are rare. */
static void test_synth_pairs(void **state)
{
    (void)state;
    da_rater_config c = da_rater_config_default();
    da_rng r1, r2;
    da_rng_seed(&r1, 4);
    da_rng_seed(&r2, 4);
    float a[DA_IMG_FLOATS], b[DA_IMG_FLOATS], a2[DA_IMG_FLOATS], b2[DA_IMG_FLOATS];
    char p[DA_CAPTION_MAX], p2[DA_CAPTION_MAX];
    int n = 400, ties = 0, agree = 0, labelled = 0;
    for (int i = 0; i < n; i++) {
        da_split split = i % 2 ? DA_SPLIT_HELDOUT : DA_SPLIT_TRAIN;
        assert_int_equal(da_synth_pair(&r1, split, a, b, p, sizeof p), DA_OK);
        assert_int_equal(da_synth_pair(&r2, split, a2, b2, p2, sizeof p2), DA_OK);
        tu_assert_bits("same seed, image a", a, a2, DA_IMG_FLOATS);
        tu_assert_bits("same seed, image b", b, b2, DA_IMG_FLOATS);
        assert_string_equal(p, p2);
        assert_true(memcmp(a, b, sizeof a) != 0);
        da_scene spec;
        assert_int_equal(da_parse_prompt(p, &spec), DA_OK);
        da_rater_terms ta, tb;
        assert_int_equal(da_rater_utility(&c, a, p, &ta), DA_OK);
        assert_int_equal(da_rater_utility(&c, b, p, &tb), DA_OK);
        int label = da_rater_label(&c, ta.utility, tb.utility, &r1);
        da_rater_label(&c, ta.utility, tb.utility, &r2);
        if (label == 0) { ties++; continue; }
        labelled++;
        agree += label == (ta.utility > tb.utility ? 1 : -1);
    }
    if (getenv("DA_TEST_VERBOSE"))
        printf("  %d pairs: %d ties, noiseless agreement %.3f\n", n, ties, (double)agree / labelled);
    assert_true(ties > 0 && ties < n / 4);
    assert_true(agree > 0.7 * labelled);
    assert_int_equal(da_synth_pair(&r1, DA_SPLIT_TRAIN, NULL, b, p, sizeof p), DA_ERR_INVALID);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_colorfulness_known),
        cmocka_unit_test(test_jpeg_grows_with_noise),
        cmocka_unit_test(test_faithful_reward),
        cmocka_unit_test(test_batched_equals_single),
        cmocka_unit_test(test_clip_ranks_captions),
        cmocka_unit_test(test_outline_reward),
        cmocka_unit_test(test_reward_errors),
        cmocka_unit_test(test_image_load),
        cmocka_unit_test(test_rater_terms),
        cmocka_unit_test(test_rater_prefers_ground_truth),
        cmocka_unit_test(test_rater_labels),
        cmocka_unit_test(test_synth_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
