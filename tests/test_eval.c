/* The alignment evaluation (src/eval/report.c, `dalign eval`) over tiny
 * random models (tu_tiny_weights): configuration and reward lists, prompt
 * files, diversity on known answers, whole runs (the same bits for 1 and 2
 * threads and run after run; every score equal to the image regenerated and
 * scored by hand), one seed (null diversity), the output files, `dalign
 * compare` on them, loading a UNet from a file path, load errors, and the
 * command line. */
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "core/json.h"
#include "eval/compare.h"
#include "dalign.h"

static char g_dir[64];            /* temp directory: weights/, prompt files, outputs */
static da_report_models g_m;      /* loaded once from g_dir/weights */

/* ---- fixtures ------------------------------------------------------------------------- */

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_report_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    if (tu_tiny_weights(tmp_path("weights"))) return -1;
    if (da_report_models_load(&g_m, tmp_path("weights"), "unet", DA_REPORT_ALL_REWARDS) != DA_OK) {
        fprintf(stderr, "setup: %s\n", da_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    da_report_models_free(&g_m);
    tu_rm_tree(g_dir);
    return 0;
}

/* small but complete: 3 held-out prompts x 2 seeds in chunks of 4 (a
 * partial last chunk), 2 sampler steps, a grid of 2 prompts */
static da_report_config small_config(void)
{
    da_report_config c = da_report_config_default();
    c.prompts = "heldout";
    c.n_prompts = 3;
    c.n_seeds = 2;
    c.batch = 4;
    c.grid_prompts = 2;
    c.opts.steps = 2;
    return c;
}

static void run(const da_report_config *c, da_report_result *r)
{
    if (da_report_init(r, c) != DA_OK || da_report_run(r, &g_m, c) != DA_OK) fail_msg("run: %s", da_last_error());
}

/* ---- configuration ------------------------------------------------------------------------ */

static void test_config(void **state)
{
    (void)state;
    da_report_config c = da_report_config_default();
    assert_int_equal(da_report_config_check(&c), DA_OK);
    /* the documented defaults: 200 split prompts, 4 seeds, batch 8, 8 grid rows, DDIM 20 cfg 3 */
    assert_int_equal(c.n_seeds, 4);
    assert_int_equal(c.batch, 8);
    assert_int_equal(c.grid_prompts, 8);
    assert_int_equal(DA_REPORT_SPLIT_PROMPTS, 200);
    assert_true(c.opts.sampler == DA_SAMPLER_DDIM && c.opts.steps == 20 && c.opts.cfg == 3.0f);
    assert_int_equal(c.rewards, DA_REPORT_ALL_REWARDS);
    da_report_config bad[6] = {c, c, c, c, c, c};
    bad[0].n_seeds = 0;
    bad[1].n_seeds = DA_EVAL_MAX_SEEDS + 1;
    bad[2].batch = 0;
    bad[3].n_prompts = -1;
    bad[4].opts.sampler = DA_SAMPLER_DDPM;   /* eta belongs to DDIM */
    bad[4].opts.eta = 0.5f;
    bad[5].prompts = "";
    for (int i = 0; i < 6; i++) {
        da_report_result r;
        if (da_report_config_check(&bad[i]) != DA_ERR_INVALID) fail_msg("bad config %d accepted", i);
        assert_int_equal(da_report_init(&r, &bad[i]), DA_ERR_INVALID);
        da_report_result_free(&r);
    }
    da_report_config_check(&bad[3]);   /* 0 is valid (the default count): the range says so */
    assert_non_null(strstr(da_last_error(), "prompts -1 not in [0, "));
}

static void test_reward_names(void **state)
{
    (void)state;
    const char *want[DA_REPORT_N_REWARDS] = {"faithful", "jpeg", "jpeg-neg", "colorful", "clip", "pref", "outline"};
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) assert_string_equal(da_report_reward_name(i), want[i]);
    assert_null(da_report_reward_name(DA_REPORT_N_REWARDS));
    unsigned m;
    assert_int_equal(da_report_parse_rewards("clip,faithful", &m), DA_OK);
    assert_int_equal(m, (1u << DA_REPORT_CLIP) | (1u << DA_REPORT_FAITHFUL));
    assert_int_equal(da_report_parse_rewards("faithful,jpeg,jpeg-neg,colorful,clip,pref,outline", &m), DA_OK);
    assert_int_equal(m, DA_REPORT_ALL_REWARDS);
    assert_int_equal(da_report_parse_rewards("jpeg,bogus", &m), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "'bogus'"));
    assert_non_null(strstr(da_last_error(), DA_REWARD_NAMES));   /* lists the valid names */
    assert_int_equal(da_report_parse_rewards("clip,", &m), DA_ERR_INVALID);
    assert_int_equal(da_report_parse_rewards("", &m), DA_ERR_INVALID);
}

/* ---- prompt files ------------------------------------------------------------------------- */

static void test_prompt_file(void **state)
{
    (void)state;
    const char *path = tmp_path("prompts.txt");
    write_text(path, "# held-out colours\n\n   a red circle  \r\n\t# indented comment\na blue square on a white "
                     "background\n\n");
    char *t;
    int n;
    assert_int_equal(da_report_read_prompts(path, &t, &n), DA_OK);
    assert_int_equal(n, 2);
    assert_string_equal(t, "a red circle");
    assert_string_equal(t + DA_CAPTION_MAX, "a blue square on a white background");
    free(t);

    /* an unknown word (tokenizer) and a word out of place (parser): FILE:LINE and the word */
    const char *bad = tmp_path("bad.txt");
    write_text(bad, "a red circle\n# fine so far\n\na purpel circle\n");
    assert_int_equal(da_report_read_prompts(bad, &t, &n), DA_ERR_INVALID);
    assert_null(t);
    char want[600];
    snprintf(want, sizeof want, "%s:4:", bad);
    if (!strstr(da_last_error(), want) || !strstr(da_last_error(), "purpel")) fail_msg("message: %s", da_last_error());
    write_text(bad, "a red circle\nred a circle\n");
    assert_int_equal(da_report_read_prompts(bad, &t, &n), DA_ERR_INVALID);
    snprintf(want, sizeof want, "%s:2:", bad);
    if (!strstr(da_last_error(), want)) fail_msg("message: %s", da_last_error());
    /* nothing but comments; a missing file */
    write_text(bad, "# nothing\n\n");
    assert_int_equal(da_report_read_prompts(bad, &t, &n), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "no prompts"));
    assert_int_equal(da_report_read_prompts(tmp_path("missing.txt"), &t, &n), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "missing.txt"));

    /* through the config: every prompt, the first n, or too many asked for */
    da_report_config c = small_config();
    c.prompts = path;
    c.n_prompts = 0;
    da_report_result r;
    assert_int_equal(da_report_init(&r, &c), DA_OK);
    assert_int_equal(r.n_prompts, 2);
    assert_int_equal(r.split, DA_SPLIT_TRAIN);
    assert_int_equal(r.n_objects[0], 1);
    da_report_result_free(&r);
    c.n_prompts = 1;
    assert_int_equal(da_report_init(&r, &c), DA_OK);
    assert_int_equal(r.n_prompts, 1);
    da_report_result_free(&r);
    c.n_prompts = 3;
    assert_int_equal(da_report_init(&r, &c), DA_ERR_INVALID);
    da_report_result_free(&r);
}

/* the split prompts are da_eval_prompts', their seeds the split's */
static void test_split_prompts(void **state)
{
    (void)state;
    da_report_config c = small_config();
    char want[3][DA_CAPTION_MAX];
    const char *src[2] = {"heldin", "heldout"};
    for (int sp = 0; sp < 2; sp++) {
        da_report_result r;
        c.prompts = src[sp];
        assert_int_equal(da_report_init(&r, &c), DA_OK);
        assert_int_equal(da_eval_prompts(c.prompt_seed, (da_split)sp, 3, want[0], NULL), DA_OK);
        assert_int_equal(r.split, sp);
        for (int p = 0; p < 3; p++) assert_string_equal(r.prompts + (size_t)p * DA_CAPTION_MAX, want[p]);
        da_report_result_free(&r);
    }
}

/* ---- diversity ------------------------------------------------------------------------------- */

static void test_diversity_known(void **state)
{
    (void)state;
    /* (1,0), (0,1), (1,1): cosines 0, 1/sqrt2, 1/sqrt2 -> mean of 1 - cos = (3 - sqrt2) / 3 */
    const float e3[6] = {1, 0, 0, 1, 1, 1};
    assert_true(fabs(da_report_diversity(e3, 3, 2) - (3.0 - sqrt(2.0)) / 3.0) < 1e-12);   /* double rounding */
    /* scale does not matter (rows are normalised); opposite rows are 2 apart; a zero row has cos 0 */
    const float scaled[6] = {5, 0, 0, 0.5f, 2, 2};
    assert_true(da_report_diversity(scaled, 3, 2) == da_report_diversity(e3, 3, 2));
    const float opp[4] = {1, -2, -1, 2};
    assert_true(da_report_diversity(opp, 2, 2) == 2.0);
    const float zero[4] = {0, 0, 3, 4};
    assert_true(da_report_diversity(zero, 2, 2) == 1.0);
    /* identical rows: exactly 0 */
    float same[4 * 5];
    for (int k = 0; k < 4; k++)
        for (int e = 0; e < 5; e++) same[k * 5 + e] = 0.37f * (float)(e + 1) - 0.9f;
    assert_true(da_report_diversity(same, 4, 5) == 0.0);

    /* identical images through the CLIP tower: one embedding copied is exactly 0 ... */
    int E = g_m.clip->cfg.embed_dim;
    float *img = malloc(3 * DA_IMG_FLOATS * sizeof(float)), *emb = malloc(3 * (size_t)E * sizeof(float));
    assert_non_null(img);
    assert_non_null(emb);
    tu_fill(img, DA_IMG_FLOATS, 11, 0.0f, 1.0f);
    assert_int_equal(da_report_embed(g_m.clip, img, 1, emb), DA_OK);
    memcpy(emb + E, emb, (size_t)E * sizeof(float));
    memcpy(emb + 2 * E, emb, (size_t)E * sizeof(float));
    assert_true(da_report_diversity(emb, 3, E) == 0.0);
    /* ... and three copies embedded in one call are 0 up to GEMM rounding: BLAS may
     * treat rows of one call with different kernels (a few float ulps of cos) */
    memcpy(img + DA_IMG_FLOATS, img, DA_IMG_FLOATS * sizeof(float));
    memcpy(img + 2 * DA_IMG_FLOATS, img, DA_IMG_FLOATS * sizeof(float));
    assert_int_equal(da_report_embed(g_m.clip, img, 3, emb), DA_OK);
    assert_true(da_report_diversity(emb, 3, E) < 1e-6);
    /* different images are not 0 */
    tu_fill(img + DA_IMG_FLOATS, DA_IMG_FLOATS, 12, 0.0f, 1.0f);
    assert_int_equal(da_report_embed(g_m.clip, img, 3, emb), DA_OK);
    assert_true(da_report_diversity(emb, 3, E) > 1e-6);
    free(img);
    free(emb);
}

/* ---- whole runs ------------------------------------------------------------------------------ */

static void assert_same_run(const da_report_result *a, const da_report_result *b)
{
    size_t PK = (size_t)a->n_prompts * a->n_seeds;
    assert_int_equal(a->n_prompts, b->n_prompts);
    tu_assert_bits("scores", a->scores, b->scores, DA_REPORT_N_REWARDS * PK);
    tu_assert_bits("utility", a->utility, b->utility, PK);
    tu_assert_bits("faith", a->faith, b->faith, PK);
    tu_assert_bits("embeddings", a->emb, b->emb, PK * a->embed_dim);
    tu_assert_bits("grid", a->grid, b->grid, (size_t)a->grid_prompts * a->grid_seeds * DA_IMG_FLOATS);
    assert_memory_equal(a->diversity, b->diversity, (size_t)a->n_prompts * sizeof(double));
}

static int count_steps(da_step_info *info, void *user)
{
    (void)info;
    ++*(int *)user;
    return 0;
}

/* 1 and 2 threads and a second run: the same bits, the same metrics.json bytes */
static void test_run_determinism(void **state)
{
    (void)state;
    da_report_config c = small_config();
    int saved = da_get_threads(), calls = 0;
    da_report_result r1, r2, r3;
    da_set_threads(1);
    run(&c, &r1);
    da_set_threads(2);
    run(&c, &r2);
    c.step_cb = count_steps;   /* a callback that changes nothing changes nothing */
    c.step_user = &calls;
    run(&c, &r3);
    da_set_threads(saved);
    assert_int_equal(calls, 2 * 2);   /* 2 steps x 2 chunks (4 + 2 images) */
    assert_same_run(&r1, &r2);
    assert_same_run(&r1, &r3);
    c.step_cb = NULL;
    assert_int_equal(da_report_write(tmp_path("det1"), &c, &r1, "w", "unet"), DA_OK);
    assert_int_equal(da_report_write(tmp_path("det2"), &c, &r2, "w", "unet"), DA_OK);
    const char *files[3] = {"metrics.json", "images.tsv", "index.html"};
    for (int i = 0; i < 3; i++) {
        char a[64], b[64];
        snprintf(a, sizeof a, "det1/%s", files[i]);
        snprintf(b, sizeof b, "det2/%s", files[i]);
        char *x = tu_slurp(tmp_path(a), NULL), *y = tu_slurp(tmp_path(b), NULL);
        if (strcmp(x, y)) fail_msg("%s differs between 1 and 2 threads", files[i]);
        free(x);
        free(y);
    }
    da_report_result_free(&r1);
    da_report_result_free(&r2);
    da_report_result_free(&r3);
}

/* A random tiny refiner saved as weights/refiner-t.{json,safetensors} */
static da_refiner *tiny_refiner(void)
{
    da_refiner_config rc = da_refiner_config_default();
    rc.d_model = 16;
    rc.n_layers = 1;
    rc.n_heads = 2;
    rc.time_freq_dim = 8;
    da_refiner *ref = da_refiner_create(&rc, 0);
    assert_non_null(ref);
    da_rng rng;
    da_rng_seed(&rng, 5);
    da_refiner_init(ref, &rng);
    assert_int_equal(da_refiner_config_save(&rc, tmp_path("weights/refiner-t.json")), DA_OK);
    assert_int_equal(da_refiner_save(ref, tmp_path("weights/refiner-t.safetensors")), DA_OK);
    return ref;
}

/* With a refiner in the loop (a random one, sampling at temperature 1):
 * the images change, the numbers do not depend on the batch (each image's
 * writer seed follows its image seed), and metrics.json names the refiner
 * and its mode (a run without one keeps its bytes: test_outputs). */
static void test_run_with_refiner(void **state)
{
    (void)state;
    da_refiner *ref = tiny_refiner();
    da_report_config c = small_config();
    da_report_result base, r4, r3;
    run(&c, &base);
    c.refiner = ref;
    c.refiner_name = "refiner-t";
    c.loop.n_refine = 2;
    c.loop.temperature = 1.0f;
    run(&c, &r4);
    c.batch = 3;
    run(&c, &r3);
    assert_same_run(&r4, &r3);
    size_t grid = (size_t)base.grid_prompts * base.grid_seeds * DA_IMG_FLOATS;
    assert_true(memcmp(base.grid, r4.grid, grid * sizeof(float)) != 0);
    assert_int_equal(da_report_write(tmp_path("with_refiner"), &c, &r4, "w", "unet"), DA_OK);
    char *json = tu_slurp(tmp_path("with_refiner/metrics.json"), NULL);
    assert_non_null(strstr(json, "\"refiner\": \"refiner-t\""));
    assert_non_null(strstr(json, "\"refine_mode\": \"loop\""));
    assert_non_null(strstr(json, "\"refine_steps\": 2"));
    free(json);
    /* refinements that do not fit the trajectory, or a refiner with a callback */
    c.loop.n_refine = 3;
    assert_int_equal(da_report_config_check(&c), DA_ERR_INVALID);
    c.loop.n_refine = 2;
    int calls = 0;
    c.step_cb = count_steps;
    c.step_user = &calls;
    assert_int_equal(da_report_config_check(&c), DA_ERR_INVALID);
    da_report_result_free(&base);
    da_report_result_free(&r4);
    da_report_result_free(&r3);
    da_refiner_free(ref);
}

/* chunk 0 (prompts 0, 0, 1, 1; seeds k = 0, 1) regenerated and scored by hand */
static void test_run_by_hand(void **state)
{
    (void)state;
    da_report_config c = small_config();
    da_report_result r;
    run(&c, &r);
    int P = r.n_prompts, K = r.n_seeds, E = r.embed_dim;
    size_t PK = (size_t)P * K;
    const char *pr[4];
    uint64_t seeds[4];
    for (int j = 0; j < 4; j++) {
        pr[j] = r.prompts + (size_t)(j / K) * DA_CAPTION_MAX;
        seeds[j] = da_eval_image_seed(c.image_seed, DA_SPLIT_HELDOUT, j / K, j % K);
    }
    float *img = malloc(4 * DA_IMG_FLOATS * sizeof(float)), *emb = malloc(4 * (size_t)E * sizeof(float));
    assert_non_null(img);
    assert_non_null(emb);
    assert_int_equal(da_pipeline_generate(g_m.pipe, &c.opts, pr, NULL, seeds, 4, NULL, NULL, img, NULL), DA_OK);
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        float s[4];
        assert_int_equal(da_reward_score(g_m.reward[i], img, pr, 4, s), DA_OK);
        tu_assert_bits(da_report_reward_name(i), r.scores + i * PK, s, 4);
        /* the reported mean is the plain mean over images (equal seeds per prompt);
         * 1e-9: the same floats summed in another order in double */
        double sum = 0.0;
        for (size_t j = 0; j < PK; j++) sum += r.scores[i * PK + j];
        if (fabs(r.reward[i].mean - sum / PK) > 1e-9)
            fail_msg("%s: mean %g, by hand %g", da_report_reward_name(i), r.reward[i].mean, sum / PK);
        assert_int_equal(r.reward[i].n, (long)PK);
    }
    tu_assert_bits("faithful reward = faithfulness", r.scores, r.faith, PK);
    /* the style share: images whose outline reward reaches the threshold, counted by hand */
    int in_style = 0;
    for (size_t j = 0; j < PK; j++) in_style += r.scores[DA_REPORT_OUTLINE * PK + j] >= DA_REPORT_STYLE_THRESHOLD;
    assert_true(fabs(r.style_share.mean - (double)in_style / PK) < 1e-12);
    assert_int_equal(r.style_share.n, (long)PK);
    for (int j = 0; j < 4; j++) {
        da_rater_config rc = da_rater_config_default();
        da_rater_terms t;
        da_faith f;
        float score;
        assert_int_equal(da_rater_utility(&rc, img + (size_t)j * DA_IMG_FLOATS, pr[j], &t), DA_OK);
        assert_true(t.utility == r.utility[j]);
        assert_int_equal(da_faithfulness(img + (size_t)j * DA_IMG_FLOATS, pr[j], &f, &score), DA_OK);
        assert_int_equal(f.n_detected, r.n_detected[j]);
    }
    /* the summaries from the per-image values, counted by hand; 1e-12: double sums in another order */
    double sum_u = 0.0;
    int exact = 0, extra = 0, nt[DA_N_CLAUSE_TYPES] = {0}, st[DA_N_CLAUSE_TYPES] = {0};
    for (size_t j = 0; j < PK; j++) {
        sum_u += r.utility[j];
        exact += r.faith[j] == 1.0f;
        extra += r.n_detected[j] > r.n_objects[j / K];
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
            nt[t] += r.n_type[p * DA_N_CLAUSE_TYPES + t];
            st[t] += r.sat_type[p * DA_N_CLAUSE_TYPES + t];
        }
    assert_true(fabs(r.rater.mean - sum_u / PK) < 1e-9);   /* utilities are ~10: 1e-9 absolute */
    assert_true(fabs(r.exact.mean - (double)exact / PK) < 1e-12);
    assert_true(fabs(r.extra.mean - (double)extra / PK) < 1e-12);
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        assert_int_equal(r.type[t].n, nt[t]);
        if (nt[t]) assert_true(fabs(r.type[t].mean - (double)st[t] / nt[t]) < 1e-12);
    }
    assert_true(nt[DA_CLAUSE_COLOUR] >= (int)PK);   /* every prompt names a colour per object */
    /* the diversity of prompts 0 and 1 from the same four images embedded the same way */
    assert_int_equal(da_report_embed(g_m.clip, img, 4, emb), DA_OK);
    tu_assert_bits("embeddings", r.emb, emb, 4 * (size_t)E);
    assert_true(r.diversity[0] == da_report_diversity(emb, 2, E));
    assert_true(r.diversity[1] == da_report_diversity(emb + 2 * E, 2, E));
    assert_true(fabs(r.div.mean - (r.diversity[0] + r.diversity[1] + r.diversity[2]) / 3.0) < 1e-12);
    assert_int_equal(r.div.n, P);
    /* the grid holds the first images */
    tu_assert_bits("grid", r.grid, img, 4 * DA_IMG_FLOATS);
    free(img);
    free(emb);
    da_report_result_free(&r);
}

static const da_json_value *member(const da_json_value *o, const char *key)
{
    for (int i = 0; o && o->type == DA_JSON_OBJECT && i < o->n; i++)
        if (!strcmp(o->items[i].key, key)) return &o->items[i];
    fail_msg("metrics.json: no member '%s'", key);
    return NULL;
}

static void parse_json(const char *path, da_json_value *root)
{
    char *js = tu_slurp(path, NULL), err[128];
    if (da_json_parse(js, strlen(js), root, err, sizeof err)) fail_msg("%s: %s", path, err);
    free(js);
}

/* K = 1: no pairs, so diversity is null with a note, never 0 */
static void test_single_seed(void **state)
{
    (void)state;
    da_report_config c = small_config();
    c.n_seeds = 1;
    da_report_result r;
    run(&c, &r);
    assert_null(r.diversity);
    assert_int_equal(da_report_write(tmp_path("k1"), &c, &r, "w", "unet"), DA_OK);
    da_json_value root;
    parse_json(tmp_path("k1/metrics.json"), &root);
    const da_json_value *d = member(&root, "diversity");
    assert_int_equal(member(d, "mean")->type, DA_JSON_NULL);
    assert_int_equal(member(d, "ci95")->type, DA_JSON_NULL);
    assert_int_equal(member(d, "note")->type, DA_JSON_STRING);
    da_json_free(&root);
    da_flat_metrics fm;
    assert_int_equal(da_flat_metrics_load(tmp_path("k1/metrics.json"), &fm), DA_OK);
    assert_null(da_flat_metrics_find(&fm, "diversity.mean"));
    assert_non_null(da_flat_metrics_find(&fm, "rewards.pref.mean"));
    da_flat_metrics_free(&fm);
    da_report_result_free(&r);
}

/* ---- output files ----------------------------------------------------------------------------- */

static void test_outputs(void **state)
{
    (void)state;
    /* a prompt file whose path needs escaping in HTML */
    const char *pf = tmp_path("p<&>.txt");
    write_text(pf, "a red circle to the left of a blue square\na small green triangle on a black background\n"
                   "a yellow square\n");
    da_report_config c = small_config();
    c.prompts = pf;
    c.rewards = DA_REPORT_ALL_REWARDS & ~(1u << DA_REPORT_PREF);   /* a subset: pref left out */
    da_report_result r;
    run(&c, &r);
    const char *out = tmp_path("out/nested");   /* parents are created */
    assert_int_equal(da_report_write(out, &c, &r, "w<\"dir\">", "unet"), DA_OK);
    char p[600];

    snprintf(p, sizeof p, "%s/metrics.json", out);
    da_json_value root;
    parse_json(p, &root);
    assert_string_equal(member(&root, "format")->str, DA_REPORT_FORMAT);
    assert_string_equal(member(&root, "prompts")->str, pf);
    assert_string_equal(member(&root, "weights")->str, "w<\"dir\">");
    assert_string_equal(member(&root, "n_prompts")->str, "3");
    assert_string_equal(member(&root, "seeds")->str, "2");
    assert_string_equal(member(&root, "batch")->str, "4");
    const da_json_value *rw = member(&root, "rewards");
    assert_int_equal(rw->n, DA_REPORT_N_REWARDS - 1);
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        if (i == DA_REPORT_PREF) continue;
        const da_json_value *x = member(rw, da_report_reward_name(i));
        double m = r.reward[i].mean;   /* %.9g: 9 significant digits */
        assert_true(fabs(strtod(member(x, "mean")->str, NULL) - m) <= 1e-8 * fmax(1.0, fabs(m)));
        assert_int_equal(member(x, "ci95")->n, 2);
    }
    const da_json_value *cl = member(member(&root, "faithfulness"), "clauses");
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++)
        assert_int_equal(strtol(member(member(cl, da_clause_type_name(t)), "n")->str, NULL, 10), r.type[t].n);
    assert_non_null(strstr(member(member(&root, "rater"), "role")->str, "held-back judge"));
    const da_json_value *ss = member(&root, "style_share");   /* outline scored: its share in the style */
    assert_string_equal(member(ss, "threshold")->str, "0.06");
    assert_true(fabs(strtod(member(ss, "mean")->str, NULL) - r.style_share.mean) <= 1e-8);
    assert_int_equal(strtol(member(ss, "n")->str, NULL, 10), r.style_share.n);
    assert_int_equal(member(ss, "ci95")->n, 2);
    da_json_free(&root);

    /* grid: 2 prompts x 2 seeds, 1-pixel gaps, 4x */
    snprintf(p, sizeof p, "%s/grid.png", out);
    int w, h, ch;
    unsigned char *png = stbi_load(p, &w, &h, &ch, 3);
    assert_non_null(png);
    assert_int_equal(w, (2 * 33 - 1) * 4);
    assert_int_equal(h, (2 * 33 - 1) * 4);
    stbi_image_free(png);

    snprintf(p, sizeof p, "%s/images.png", out);   /* what compare --html puts side by side */
    png = stbi_load(p, &w, &h, &ch, 3);
    assert_non_null(png);
    assert_int_equal(w, 2 * 32);
    assert_int_equal(h, 3 * 32);
    stbi_image_free(png);
    snprintf(p, sizeof p, "%s/%s", out, DA_EVAL_DONE);   /* the completion marker, written last */
    char *done = tu_slurp(p, NULL);
    assert_non_null(strstr(done, "metrics.json\nindex.html\n"));
    free(done);

    snprintf(p, sizeof p, "%s/images.tsv", out);
    char *tsv = tu_slurp(p, NULL);
    int lines = 0;
    for (char *q = tsv; *q; q++) lines += *q == '\n';
    assert_int_equal(lines, 1 + 3 * 2);
    assert_non_null(strstr(tsv, "\tclip\toutline\trater\tobjects\n"));
    assert_null(strstr(tsv, "pref"));
    free(tsv);

    snprintf(p, sizeof p, "%s/index.html", out);
    char *html = tu_slurp(p, NULL);
    const char *need[] = {"<svg", "src=\"data:image/png;base64,iVBORw0KGgo", "p&lt;&amp;&gt;.txt",
                          "w&lt;&quot;dir&quot;&gt;",
                          "a red circle to the left of a blue square", "a small green triangle on a black background",
                          "held-back judge", "</html>"};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        if (!strstr(html, need[i])) fail_msg("index.html lacks %s", need[i]);
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        if (i == DA_REPORT_PREF) continue;
        char cell[64];
        snprintf(cell, sizeof cell, "<td>%s</td>", da_report_reward_name(i));
        if (!strstr(html, cell)) fail_msg("index.html has no row for %s", da_report_reward_name(i));
    }
    assert_null(strstr(html, "p<&>"));   /* never raw */
    assert_null(strstr(html, "src=\"grid.png\""));   /* one self-contained file: every image inline */
    int inline_images = 0;
    for (const char *q = strstr(html, "data:image/png"); q; q = strstr(q + 1, "data:image/png")) inline_images++;
    assert_int_equal(inline_images, 3 * 2);   /* every prompt's every image */
    assert_null(strstr(html, "<td>pref</td>"));
    free(html);

    DIR *d = opendir(out);   /* no temp file left behind */
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) fail_msg("temp file %s left in %s", e->d_name, out);
    closedir(d);
    /* without the outline reward: no style share, no outline column */
    unsigned scored = r.rewards;
    r.rewards &= ~(1u << DA_REPORT_OUTLINE);
    assert_int_equal(da_report_write(tmp_path("nostyle"), &c, &r, "w", "unet"), DA_OK);
    r.rewards = scored;
    char *js = tu_slurp(tmp_path("nostyle/metrics.json"), NULL);
    tsv = tu_slurp(tmp_path("nostyle/images.tsv"), NULL);
    assert_null(strstr(js, "style_share"));
    assert_null(strstr(js, "outline"));
    assert_non_null(strstr(tsv, "\tclip\trater\tobjects\n"));
    free(js);
    free(tsv);
    write_text(tmp_path("blocker"), "x");   /* a file where the directory should be */
    assert_int_equal(da_report_write(tmp_path("blocker/x"), &c, &r, "w", "unet"), DA_ERR_IO);

    /* numbers: %.9g (a tiny diversity is not 0.000000), null when not finite,
     * and a non-UTF-8 path written so that the strict parser takes it */
    r.div.mean = 4e-7;
    r.div.half = 1e-7;
    r.div.lo = 3e-7;   /* the interval written is [lo, hi] */
    r.div.hi = 5e-7;
    r.reward[DA_REPORT_CLIP].mean = NAN;
    r.rater.half = INFINITY;
    r.rater.lo = -INFINITY;
    r.rater.hi = INFINITY;
    assert_int_equal(da_report_write(tmp_path("odd"), &c, &r, "w\xff\xc3\xa9", "unet"), DA_OK);
    parse_json(tmp_path("odd/metrics.json"), &root);
    const da_json_value *dv = member(&root, "diversity");
    assert_string_equal(member(dv, "mean")->str, "4e-07");
    assert_string_equal(member(dv, "ci95")->items[0].str, "3e-07");
    assert_int_equal(member(member(member(&root, "rewards"), "clip"), "mean")->type, DA_JSON_NULL);
    const da_json_value *ci = member(member(&root, "rater"), "ci95");
    assert_true(ci->items[0].type == DA_JSON_NULL && ci->items[1].type == DA_JSON_NULL);
    assert_string_equal(member(&root, "weights")->str, "w\xc3\xbf\xc3\xa9");   /* 0xff as U+00FF, é kept */
    da_json_free(&root);
    da_report_result_free(&r);
}

/* `dalign compare` reads two of these files and finds the same keys */
static void test_compare(void **state)
{
    (void)state;
    da_report_config c = small_config();
    da_report_result r;
    run(&c, &r);
    assert_int_equal(da_report_write(tmp_path("cmpA"), &c, &r, "w", "unet"), DA_OK);
    da_report_result_free(&r);
    c.image_seed = 99;   /* other images, the same keys */
    run(&c, &r);
    assert_int_equal(da_report_write(tmp_path("cmpB"), &c, &r, "w", "unet"), DA_OK);
    da_report_result_free(&r);
    da_flat_metrics a, b;
    assert_int_equal(da_flat_metrics_load(tmp_path("cmpA/metrics.json"), &a), DA_OK);
    assert_int_equal(da_flat_metrics_load(tmp_path("cmpB/metrics.json"), &b), DA_OK);
    const char *keys[] = {"n_prompts", "rewards.clip.mean", "rewards.jpeg-neg.ci95.1", "rewards.faithful.n",
                          "faithfulness.mean", "faithfulness.exact.mean", "faithfulness.clauses.relation.mean",
                          "diversity.mean", "diversity.ci95.0", "rater.mean"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!da_flat_metrics_find(&a, keys[i])) fail_msg("no key %s", keys[i]);
    assert_true(da_flat_metrics_find(&b, "image_seed")->value == 99.0);
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    da_compare_counts cnt;
    da_flat_metrics_compare(f, &a, &b, "A", "B", &cnt);
    fclose(f);
    assert_int_equal(cnt.both, a.n);   /* same shape of file: every key in both */
    assert_int_equal(cnt.only_a, 0);
    assert_int_equal(cnt.only_b, 0);
    assert_non_null(strstr(buf, "rewards.clip.mean"));
    free(buf);
    da_flat_metrics_free(&a);
    da_flat_metrics_free(&b);
}

/* ---- loading ------------------------------------------------------------------------------------- */

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

/* --unet FILE.safetensors (config FILE.json beside it) = the same UNet by name */
static void test_unet_file(void **state)
{
    (void)state;
    mkdir(tmp_path("other"), 0755);
    copy_file(tmp_path("weights/unet.safetensors"), tmp_path("other/u2.safetensors"));
    copy_file(tmp_path("weights/unet.json"), tmp_path("other/u2.json"));
    da_report_models m;
    unsigned few = 1u << DA_REPORT_FAITHFUL;
    assert_int_equal(da_report_models_load(&m, tmp_path("weights"), tmp_path("other/u2.safetensors"), few), DA_OK);
    da_report_config c = small_config();
    c.rewards = few;
    da_report_result a, b;
    assert_int_equal(da_report_init(&a, &c), DA_OK);
    assert_int_equal(da_report_run(&a, &m, &c), DA_OK);
    run(&c, &b);
    tu_assert_bits("faithfulness", a.faith, b.faith, 6);
    tu_assert_bits("embeddings", a.emb, b.emb, 6 * (size_t)a.embed_dim);
    da_report_result_free(&a);
    da_report_result_free(&b);
    da_report_models_free(&m);

    /* the config missing beside the file; the file missing */
    copy_file(tmp_path("weights/unet.safetensors"), tmp_path("other/lonely.safetensors"));
    assert_int_equal(da_report_models_load(&m, tmp_path("weights"), tmp_path("other/lonely.safetensors"), few),
                     DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "lonely.json"));
    da_report_models_free(&m);
    assert_int_equal(da_report_models_load(&m, tmp_path("weights"), tmp_path("other/nope.safetensors"), few),
                     DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "nope.safetensors"));
    da_report_models_free(&m);
}

static void test_load_errors(void **state)
{
    (void)state;
    da_report_models m;
    assert_int_equal(da_report_models_load(&m, tmp_path("nowhere"), "unet", DA_REPORT_ALL_REWARDS), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "nowhere"));
    da_report_models_free(&m);
    assert_int_equal(da_report_models_load(&m, tmp_path("weights"), "unet-x", 0), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "unet-x.json"));
    da_report_models_free(&m);
    /* a CLIP tower for another image size */
    assert_int_equal(tu_tiny_weights(tmp_path("w64")), 0);
    da_clip_config cc;
    assert_int_equal(da_clip_config_load(&cc, tmp_path("w64/clip.json")), DA_OK);
    cc.image_size = 64;
    assert_int_equal(da_clip_config_save(&cc, tmp_path("w64/clip.json")), DA_OK);
    assert_int_equal(da_report_models_load(&m, tmp_path("w64"), "unet", 0), DA_ERR_FORMAT);
    if (!strstr(da_last_error(), "clip.json") || !strstr(da_last_error(), "image_size 64"))
        fail_msg("message: %s", da_last_error());
    da_report_models_free(&m);
    /* a selected reward whose weights are missing */
    remove(tmp_path("w64/reward_net.json"));
    assert_int_equal(tu_tiny_weights(tmp_path("w64")), 0);   /* restores clip.json too */
    remove(tmp_path("w64/reward_net.json"));
    assert_int_not_equal(da_report_models_load(&m, tmp_path("w64"), "unet", 1u << DA_REPORT_PREF), DA_OK);
    assert_non_null(strstr(da_last_error(), "reward_net.json"));
    da_report_models_free(&m);
    /* weights that are no safetensors file: the parser names nothing, the
     * message gets the path in front; a missing file is named too */
    assert_int_equal(tu_tiny_weights(tmp_path("w64")), 0);
    char clip[512];
    snprintf(clip, sizeof clip, "%s", tmp_path("w64/clip.safetensors"));
    write_text(clip, "not weights");
    assert_int_equal(da_report_models_load(&m, tmp_path("w64"), "unet", 0), DA_ERR_FORMAT);
    if (strncmp(da_last_error(), clip, strlen(clip)) || !strstr(da_last_error(), "header length"))
        fail_msg("message: %s", da_last_error());
    da_report_models_free(&m);
    remove(clip);
    assert_int_equal(da_report_models_load(&m, tmp_path("w64"), "unet", 0), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "CLIP weights"));
    assert_non_null(strstr(da_last_error(), clip));
    da_report_models_free(&m);
}

/* ---- command line ---------------------------------------------------------------------------------- */

static int run_cli(const char *args)
{
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "%s eval %s > %s 2>&1", tu_cli_cmd(), args, tmp_path("cli.log"));
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* exit code rc and the log mentions `text` */
static void expect_cli(const char *args, int rc, const char *text)
{
    int got = run_cli(args);
    char *log = tu_slurp(tmp_path("cli.log"), NULL);
    if (got != rc || (text && !strstr(log, text)))
        fail_msg("dalign eval %s: exit %d (want %d), log:\n%s", args, got, rc, log);
    free(log);
}

static void test_cli(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();   /* the suite was run without the dalign binary next to it */
    char args[2048];
    snprintf(args, sizeof args, "--weights %s --prompts heldin --n-prompts 2 --seeds 2 --steps 1 --batch 3 -o %s",
             tmp_path("weights"), tmp_path("cli_out"));
    expect_cli(args, 0, "report: ");
    const char *files[4] = {"metrics.json", "images.tsv", "grid.png", "index.html"};
    for (int i = 0; i < 4; i++) {
        char p[64];
        snprintf(p, sizeof p, "cli_out/%s", files[i]);
        if (access(tmp_path(p), R_OK)) fail_msg("dalign eval did not write %s", files[i]);
    }
    char *log = tu_slurp(tmp_path("cli.log"), NULL);
    assert_non_null(strstr(log, "rater utility (held-back judge)"));   /* the table on stdout */
    assert_non_null(strstr(log, "eval: images 4/4"));                  /* progress on stderr */
    assert_non_null(strstr(log, "in the outline style (>= 0.06)"));    /* the style share's row */
    free(log);

    expect_cli("--help", 0, "--refiner");
    expect_cli("--help", 0, "(outline >= 0.06,");
    expect_cli("--seeds 0", 2, "--seeds");
    expect_cli("--seeds 257", 2, "--seeds");
    expect_cli("--bogus 1", 2, "unknown option");
    expect_cli("--batch", 2, "needs a value");
    expect_cli("--refine-mode apriori", 2, "need --refiner");
    expect_cli("--refine-keep-meaning", 2, "need --refiner");
    expect_cli("--no-refine-keep-meaning", 2, "need --refiner");
    expect_cli("--refiner r --refine-mode closed", 2, "loop, apriori or once");
    expect_cli("--refiner r --refine-steps 21", 2, "more refinements than the 20 sampler steps");
    snprintf(args, sizeof args, "--weights %s --refiner %s -o %s", tmp_path("weights"), tmp_path("none.safetensors"),
             tmp_path("cli_out3"));
    expect_cli(args, 1, "refiner file");
    da_refiner_free(tiny_refiner());
    snprintf(args, sizeof args, "--weights %s --refiner refiner-t --refine-steps 1 --n-prompts 1 --seeds 1 --steps 1 "
             "-o %s", tmp_path("weights"), tmp_path("cli_out4"));
    /* a refiner trained without the guard runs without it (tests/test_promptloop.c: with) */
    expect_cli(args, 0, "eval: refiner refiner-t, mode loop, 1 refinement(s) (after step 0), temperature 0, keep meaning off");
    /* a window is said on stderr and recorded in metrics.json */
    snprintf(args, sizeof args, "--weights %s --refiner refiner-t --refine-steps 2 --refine-window 1:3 --n-prompts 1 "
             "--seeds 1 --steps 3 -o %s", tmp_path("weights"), tmp_path("cli_out5"));
    expect_cli(args, 0, "2 refinement(s) (after steps 1, 2)");
    char *mj = tu_slurp(tmp_path("cli_out5/metrics.json"), NULL);
    assert_non_null(strstr(mj, "\"refine_window\": [1, 3]"));
    free(mj);
    snprintf(args, sizeof args, "--weights %s --refiner refiner-t --refine-steps 3 --refine-window 1:3 --n-prompts 1 "
             "--seeds 1 --steps 3 -o %s", tmp_path("weights"), tmp_path("cli_out6"));
    expect_cli(args, 2, "do not fit the window 1:3");
    expect_cli("--rewards clip,bogus", 2, "'bogus'");
    expect_cli("--sampler ddpm --eta 0.5", 2, "eta");
    snprintf(args, sizeof args, "--weights %s -o %s", tmp_path("nowhere"), tmp_path("cli_out2"));
    expect_cli(args, 1, "nowhere");
    snprintf(args, sizeof args, "--weights %s --prompts %s", tmp_path("weights"), tmp_path("missing.txt"));
    expect_cli(args, 2, "missing.txt");
    snprintf(args, sizeof args, "--weights %s --prompts %s", tmp_path("weights"), tmp_path("weights"));
    expect_cli(args, 2, "is a directory, not a prompt file");
    /* an -o that cannot be created fails before the weights are looked at */
    write_text(tmp_path("in_the_way"), "x");
    snprintf(args, sizeof args, "--weights %s -o %s", tmp_path("nowhere"), tmp_path("in_the_way/out"));
    expect_cli(args, 1, "a file is in the way");
    char *log2 = tu_slurp(tmp_path("cli.log"), NULL);
    assert_null(strstr(log2, "nowhere"));
    free(log2);
    write_text(tmp_path("bad_cli.txt"), "a red circle\na purpel circle\n");
    snprintf(args, sizeof args, "--weights %s --prompts %s", tmp_path("weights"), tmp_path("bad_cli.txt"));
    expect_cli(args, 1, "bad_cli.txt:2:");
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_reward_names),
        cmocka_unit_test(test_prompt_file),
        cmocka_unit_test(test_split_prompts),
        cmocka_unit_test(test_diversity_known),
        cmocka_unit_test(test_run_determinism),
        cmocka_unit_test(test_run_with_refiner),
        cmocka_unit_test(test_run_by_hand),
        cmocka_unit_test(test_single_seed),
        cmocka_unit_test(test_outputs),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_unet_file),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
