/* Base-model evaluation (src/eval/eval.c, `dalign eval-base`) over tiny
 * randomly initialised models: prompt selection (splits, prefix stability),
 * image seeds, the clustered 95% interval on known answers, the clause
 * accounting on ground-truth images, a whole run (its images are the
 * pipeline's, same numbers for 1 and 2 threads and run after run), the VAE
 * PSNR against a hand-written loop, the output files, and the command line. */
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "core/json.h"
#include "dalign.h"

static char g_dir[64];          /* temp directory: weights/ and outputs */
static char g_bin[512];         /* build/<variant>/dalign, next to this suite */
static da_text_encoder *g_text;
static da_vae *g_vae;
static da_unet *g_unet;
static da_pipeline *g_pipe;

/* ---- fixtures ------------------------------------------------------------------ */

static const char *tmp_path(const char *name)
{
    static char buf[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* tiny random models, saved into DIR/weights for the command-line tests */
static int make_models(void)
{
    da_rng rng;
    da_rng_seed(&rng, 7);
    da_text_config tc = {.vocab_size = da_vocab_size(), .context = DA_MAX_TOKENS, .d_model = 16,
                         .n_layers = 1, .n_heads = 2, .mlp_ratio = 2, .proj_dim = 8};
    da_vae_config vc = da_vae_config_default();
    vc.ch[0] = vc.ch[1] = 8;
    vc.ch[2] = 8;
    vc.groups = 4;
    vc.scale_factor = 1.5f;
    da_unet_config uc = da_unet_config_default();
    uc.ch[0] = 8;
    uc.ch[1] = 16;
    uc.groups = 4;
    uc.n_heads = 2;
    uc.context_dim = 16;
    uc.time_freq_dim = 8;
    uc.time_dim = 16;
    g_text = da_text_encoder_create(&tc, 0);
    g_vae = da_vae_create(&vc, 0);
    g_unet = da_unet_create(&uc, 0);
    if (!g_text || !g_vae || !g_unet) return -1;
    da_text_encoder_init(g_text, &rng);
    da_vae_init(g_vae, &rng);
    da_unet_init(g_unet, &rng);
    if (mkdir(tmp_path("weights"), 0755)) return -1;
    int bad = da_text_config_save(&tc, tmp_path("weights/text_encoder.json")) != DA_OK ||
              da_text_encoder_save(g_text, tmp_path("weights/text_encoder.safetensors")) != DA_OK ||
              da_vae_config_save(&vc, tmp_path("weights/vae.json")) != DA_OK ||
              da_vae_save(g_vae, tmp_path("weights/vae.safetensors")) != DA_OK ||
              da_unet_config_save(&uc, tmp_path("weights/unet.json")) != DA_OK ||
              da_unet_save(g_unet, tmp_path("weights/unet.safetensors")) != DA_OK;
    if (bad) return -1;
    return da_pipeline_create(&g_pipe, g_text, g_vae, g_unet, NULL) == DA_OK ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_eval_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_bin, sizeof g_bin, "%s", tu_cli_path());
    return make_models();
}

static int teardown(void **state)
{
    (void)state;
    da_pipeline_free(g_pipe);
    da_text_encoder_free(g_text);
    da_vae_free(g_vae);
    da_unet_free(g_unet);
    tu_rm_tree(g_dir);
    return 0;
}

/* a small but complete run: partial last chunks (6 images in chunks of 4,
 * 5 recon images in chunks of 4) and a grid of 2 prompts per split */
static da_eval_config small_config(void)
{
    da_eval_config c = da_eval_config_default();
    c.n_prompts = 3;
    c.n_seeds = 2;
    c.batch = 4;
    c.n_recon = 5;
    c.grid_prompts = 2;
    c.opts.steps = 2;
    return c;
}

/* ---- prompts and seeds ------------------------------------------------------------ */

static void test_prompts(void **state)
{
    (void)state;
    enum { N = 200 };   /* the default: each split must supply 200 distinct prompts */
    char *a = malloc((size_t)N * DA_CAPTION_MAX), *b = malloc((size_t)N * DA_CAPTION_MAX);
    da_scene *sc = malloc(N * sizeof *sc);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(sc);
    for (int sp = 0; sp < 2; sp++) {
        assert_int_equal(da_eval_prompts(DA_EVAL_PROMPT_SEED, (da_split)sp, N, a, sc), DA_OK);
        for (int p = 0; p < N; p++) {
            unsigned h = da_scene_heldout(&sc[p]);
            if (sp == DA_SPLIT_TRAIN ? h != 0 : h == 0)
                fail_msg("split %d prompt %d '%s': held-out bits %u", sp, p, a + (size_t)p * DA_CAPTION_MAX, h);
            da_scene spec;
            if (da_parse_prompt(a + (size_t)p * DA_CAPTION_MAX, &spec) != DA_OK) fail_msg("%s", da_last_error());
            for (int q = 0; q < p; q++)
                if (!strcmp(a + (size_t)p * DA_CAPTION_MAX, a + (size_t)q * DA_CAPTION_MAX))
                    fail_msg("split %d: prompts %d and %d are both '%s'", sp, q, p, a + (size_t)p * DA_CAPTION_MAX);
        }
        /* the first 10 of 200 are the 10 of a shorter list: --prompts 10 is a subset */
        assert_int_equal(da_eval_prompts(DA_EVAL_PROMPT_SEED, (da_split)sp, 10, b, NULL), DA_OK);
        int same = 0;
        for (int p = 0; p < 10; p++) same += !strcmp(a + (size_t)p * DA_CAPTION_MAX, b + (size_t)p * DA_CAPTION_MAX);
        assert_int_equal(same, 10);
        /* another seed, other prompts */
        assert_int_equal(da_eval_prompts(DA_EVAL_PROMPT_SEED + 7, (da_split)sp, 10, b, NULL), DA_OK);
        same = 0;
        for (int p = 0; p < 10; p++) same += !strcmp(a + (size_t)p * DA_CAPTION_MAX, b + (size_t)p * DA_CAPTION_MAX);
        assert_true(same < 10);
    }
    free(a);
    free(b);
    free(sc);
}

static void test_image_seeds(void **state)
{
    (void)state;
    assert_true(da_eval_image_seed(5, DA_SPLIT_TRAIN, 0, 0) == 5);
    assert_true(da_eval_image_seed(5, DA_SPLIT_TRAIN, 2, 3) == 5 + 2 * 256 + 3);
    assert_true(da_eval_image_seed(5, DA_SPLIT_HELDOUT, 2, 3) == 5 + (1ull << 28) + 2 * 256 + 3);
    /* no two images of a run as large as allowed share a seed in the low 32
     * bits, the part da_rng_seed keeps (increasing, so no equal neighbours) */
    enum { P = DA_EVAL_MAX_PROMPTS, K = 2 };
    static uint64_t s[2 * P * K];
    int n = 0;
    for (int sp = 0; sp < 2; sp++)
        for (int p = 0; p < P; p++)
            for (int k = 0; k < K; k++) s[n++] = da_eval_image_seed(0, (da_split)sp, p, k) & 0xffffffffu;
    for (int i = 1; i < n; i++)
        if (s[i] <= s[i - 1]) fail_msg("seeds %d and %d not increasing", i - 1, i);
}

/* ---- statistics ---------------------------------------------------------------------- */

static void test_cluster_mean(void **state)
{
    (void)state;
    /* four prompts of one image each: the usual interval of a mean,
     * 1.96 * sd / sqrt(k) with sd^2 = 0.75 / 3 */
    const double s1[4] = {1, 0, 1, 1}, n1[4] = {1, 1, 1, 1};
    da_eval_stat a = da_eval_cluster_mean(s1, n1, 4);
    assert_true(fabs(a.mean - 0.75) < 1e-12);
    assert_true(fabs(a.half - 1.959963984540054 * 0.25) < 1e-12);
    assert_int_equal(a.n, 4);
    /* unequal clusters: r = 2/3, residuals (2/3, -2/3), var = 2 * (8/9) / 9 */
    const double s2[2] = {2, 0}, n2[2] = {2, 1};
    da_eval_stat b = da_eval_cluster_mean(s2, n2, 2);
    assert_true(fabs(b.mean - 2.0 / 3.0) < 1e-12);
    assert_true(fabs(b.half - 1.959963984540054 * 4.0 / 9.0) < 1e-12);
    /* one cluster: no interval; no clauses: all zero */
    da_eval_stat c = da_eval_cluster_mean(s2, n2, 1);
    assert_true(c.mean == 1.0 && c.half == 0.0 && c.n == 2);
    const double z[2] = {0, 0};
    da_eval_stat d = da_eval_cluster_mean(z, z, 2);
    assert_true(d.mean == 0.0 && d.half == 0.0 && d.n == 0);
}

/* split statistics from hand-set scores and clause counts */
static void test_split_stats(void **state)
{
    (void)state;
    float scores[4] = {1.0f, 0.5f, 0.5f, 0.0f};   /* prompt 0: seeds 1, 0.5; prompt 1: 0.5, 0 */
    int n_type[2 * DA_N_CLAUSE_TYPES] = {0}, sat_type[2 * DA_N_CLAUSE_TYPES] = {0};
    n_type[DA_CLAUSE_COLOUR] = 2;       /* prompt 0: 2 colour clauses, 2 satisfied */
    sat_type[DA_CLAUSE_COLOUR] = 2;
    n_type[DA_N_CLAUSE_TYPES + DA_CLAUSE_COLOUR] = 2;   /* prompt 1: 2, 0 satisfied */
    n_type[DA_N_CLAUSE_TYPES + DA_CLAUSE_RELATION] = 2; /* prompt 1: 2 relation clauses, 1 satisfied */
    sat_type[DA_N_CLAUSE_TYPES + DA_CLAUSE_RELATION] = 1;
    da_scene scenes[2];
    memset(scenes, 0, sizeof scenes);
    scenes[0].n_objects = scenes[1].n_objects = 1;
    scenes[0].relation = scenes[1].relation = scenes[0].background = scenes[1].background = DA_ANY;
    scenes[1].obj[0].colour = DA_BLUE;   /* a held-out pair: blue triangle */
    scenes[1].obj[0].shape = DA_TRIANGLE;
    da_eval_split s = {.n_prompts = 2, .n_seeds = 2, .scenes = scenes, .scores = scores,
                       .n_type = n_type, .sat_type = sat_type};
    da_eval_split_stats(&s);
    assert_true(fabs(s.faith.mean - 0.5) < 1e-12 && s.faith.n == 4);
    /* per-prompt means 0.75 and 0.25: sd = sqrt(0.125), interval 1.96 sd / sqrt(2) */
    assert_true(fabs(s.faith.half - 1.959963984540054 * 0.25) < 1e-9);
    assert_true(fabs(s.exact.mean - 0.25) < 1e-12);
    assert_true(fabs(s.type[DA_CLAUSE_COLOUR].mean - 0.5) < 1e-12 && s.type[DA_CLAUSE_COLOUR].n == 4);
    assert_true(fabs(s.type[DA_CLAUSE_RELATION].mean - 0.5) < 1e-12 && s.type[DA_CLAUSE_RELATION].n == 2);
    assert_true(s.type[DA_CLAUSE_RELATION].half == 0.0);   /* one prompt: no interval */
    assert_true(s.type[DA_CLAUSE_SIZE].n == 0);
    assert_true(fabs(s.heldout_pair.mean - 0.25) < 1e-12 && s.heldout_pair.n == 2);
    assert_true(s.heldout_layout.n == 0);
}

/* Ground-truth renders score 1 on their canonical captions, and changing one
 * object's colour in the prompt costs exactly one colour clause. */
static void test_score_ground_truth(void **state)
{
    (void)state;
    enum { B = 24 };
    float *img = malloc((size_t)B * DA_IMG_FLOATS * sizeof(float));
    static char text[2][B][DA_CAPTION_MAX];
    const char *pr[2][B];
    da_scene sc[B];
    da_rng rng;
    da_rng_seed(&rng, 3);
    for (int b = 0; b < B; b++) {
        assert_int_equal(da_world_example(&rng, (da_split)(b % 2), &sc[b], img + (size_t)b * DA_IMG_FLOATS, NULL, 0),
                         DA_OK);
        assert_int_equal(da_world_caption(NULL, &sc[b], text[0][b], DA_CAPTION_MAX), DA_OK);
        da_scene wrong = sc[b];
        wrong.obj[0].colour = (wrong.obj[0].colour + 1) % DA_N_COLOURS;
        assert_int_equal(da_world_caption(NULL, &wrong, text[1][b], DA_CAPTION_MAX), DA_OK);
        pr[0][b] = text[0][b];
        pr[1][b] = text[1][b];
    }
    float score[B];
    int n_type[B * DA_N_CLAUSE_TYPES], sat_type[B * DA_N_CLAUSE_TYPES];
    for (int v = 0; v < 2; v++) {
        assert_int_equal(da_eval_score(img, pr[v], B, score, n_type, sat_type), DA_OK);
        for (int b = 0; b < B; b++) {
            const int *n = n_type + b * DA_N_CLAUSE_TYPES, *s = sat_type + b * DA_N_CLAUSE_TYPES;
            int two = sc[b].n_objects == 2, total = 0;
            /* the canonical caption states every attribute */
            assert_int_equal(n[DA_CLAUSE_COLOUR], sc[b].n_objects);
            assert_int_equal(n[DA_CLAUSE_SHAPE], sc[b].n_objects);
            assert_int_equal(n[DA_CLAUSE_SIZE], sc[b].n_objects);
            assert_int_equal(n[DA_CLAUSE_RELATION], two);
            assert_int_equal(n[DA_CLAUSE_BACKGROUND], 1);
            for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) total += n[t];
            int missing = v == 0 ? 0 : 1;
            if (s[DA_CLAUSE_COLOUR] != n[DA_CLAUSE_COLOUR] - missing)
                fail_msg("image %d '%s': %d of %d colour clauses", b, pr[v][b], s[DA_CLAUSE_COLOUR], n[DA_CLAUSE_COLOUR]);
            if (fabsf(score[b] - (float)(total - missing) / (float)total) > 1e-6f)
                fail_msg("image %d '%s': score %g", b, pr[v][b], score[b]);
        }
    }
    const char *bad[1] = {"a red purpel circle"};
    assert_int_equal(da_eval_score(img, bad, 1, score, n_type, sat_type), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "purpel"));
    free(img);
}

/* ---- whole runs ------------------------------------------------------------------------ */

static void assert_same_result(const da_eval_result *a, const da_eval_result *b)
{
    for (int sp = 0; sp < 2; sp++) {
        const da_eval_split *x = &a->split[sp], *y = &b->split[sp];
        size_t n = (size_t)x->n_prompts * x->n_seeds;
        tu_assert_bits("scores", x->scores, y->scores, n);
        assert_memory_equal(x->n_type, y->n_type, (size_t)x->n_prompts * DA_N_CLAUSE_TYPES * sizeof(int));
        assert_memory_equal(x->sat_type, y->sat_type, (size_t)x->n_prompts * DA_N_CLAUSE_TYPES * sizeof(int));
        tu_assert_bits("grid images", x->grid, y->grid, (size_t)x->grid_prompts * x->n_seeds * DA_IMG_FLOATS);
        assert_true(x->faith.mean == y->faith.mean && x->faith.half == y->faith.half);
    }
    assert_true(a->psnr == b->psnr && a->psnr_image.mean == b->psnr_image.mean && a->psnr_min == b->psnr_min);
}

/* the run's images are the pipeline's images for the documented prompts and
 * seeds, in chunks of `batch`; 1 and 2 threads and a second run agree */
static void test_run(void **state)
{
    (void)state;
    da_eval_config c = small_config();
    int saved = da_get_threads();
    da_eval_result r1, r2, r3;
    da_set_threads(1);
    assert_int_equal(da_eval_base_run(g_pipe, &c, &r1), DA_OK);
    da_set_threads(2);
    assert_int_equal(da_eval_base_run(g_pipe, &c, &r2), DA_OK);
    assert_int_equal(da_eval_base_run(g_pipe, &c, &r3), DA_OK);
    da_set_threads(saved);
    assert_same_result(&r1, &r2);
    assert_same_result(&r2, &r3);

    /* chunk 0 of the held-out split (images 0-3: prompts 0, 0, 1, 1, seeds k = 0, 1)
     * regenerated by hand and scored one by one */
    const da_eval_split *s = &r1.split[DA_SPLIT_HELDOUT];
    char texts[3][DA_CAPTION_MAX];
    assert_int_equal(da_eval_prompts(DA_EVAL_PROMPT_SEED, DA_SPLIT_HELDOUT, 3, texts[0], NULL), DA_OK);
    for (int p = 0; p < 3; p++) assert_string_equal(texts[p], s->prompts + (size_t)p * DA_CAPTION_MAX);
    const char *pr[4] = {texts[0], texts[0], texts[1], texts[1]};
    uint64_t seeds[4];
    for (int j = 0; j < 4; j++) seeds[j] = da_eval_image_seed(c.image_seed, DA_SPLIT_HELDOUT, j / 2, j % 2);
    float *img = malloc(4 * DA_IMG_FLOATS * sizeof(float));
    assert_int_equal(da_pipeline_generate(g_pipe, &c.opts, pr, NULL, seeds, 4, NULL, NULL, img, NULL), DA_OK);
    tu_assert_bits("grid = the pipeline's images of prompts 0-1", s->grid, img, 4 * DA_IMG_FLOATS);
    for (int j = 0; j < 4; j++) {
        float f;
        assert_int_equal(da_faithfulness(img + (size_t)j * DA_IMG_FLOATS, pr[j], NULL, &f), DA_OK);
        if (f != s->scores[j]) fail_msg("image %d: score %g, by hand %g", j, s->scores[j], f);
    }
    free(img);
    for (int sp = 0; sp < 2; sp++) {
        const da_eval_split *x = &r1.split[sp];
        double sum = 0.0;
        for (int j = 0; j < 6; j++) sum += x->scores[j];
        assert_true(fabs(x->faith.mean - sum / 6.0) < 1e-12);
        assert_true(x->faith.n == 6 && x->faith.mean >= 0.0 && x->faith.mean <= 1.0);
    }
    da_eval_result_free(&r1);
    da_eval_result_free(&r2);
    da_eval_result_free(&r3);
}

/* PSNR against a hand-written loop over the same images, one at a time */
static void test_vae_psnr(void **state)
{
    (void)state;
    enum { N = 5 };
    double psnr, worst;
    da_eval_stat per;
    assert_int_equal(da_eval_vae_psnr(g_vae, N, 42, 2, &psnr, &per, &worst), DA_OK);
    da_rng rng;
    da_rng_seed(&rng, 42);
    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_tape_set_grad(&t, 0);
    double sq = 0.0, lo = INFINITY, sum = 0.0;
    for (int i = 0; i < N; i++) {
        float x[DA_IMG_FLOATS];
        da_scene scene;
        assert_int_equal(da_world_example(&rng, DA_SPLIT_HELDOUT, &scene, x, NULL, 0), DA_OK);
        float xm[DA_IMG_FLOATS];
        for (int k = 0; k < DA_IMG_FLOATS; k++) xm[k] = 2.0f * x[k] - 1.0f;
        da_tape_reset(&t);
        int shape[4] = {1, 3, DA_IMG, DA_IMG};
        da_tensor *mean, *logvar;
        da_vae_encode(&t, g_vae, da_leaf(&t, xm, NULL, 4, shape), &mean, &logvar);
        da_tensor *y = da_vae_decode(&t, g_vae, mean);
        double e = 0.0;
        for (int k = 0; k < DA_IMG_FLOATS; k++) {
            double v = fmin(fmax((y->data[k] + 1.0) / 2.0, 0.0), 1.0);
            e += (v - x[k]) * (v - x[k]);
        }
        sq += e;
        double p = 10.0 * log10(DA_IMG_FLOATS / e);
        sum += p;
        lo = fmin(lo, p);
    }
    da_tape_free(&t);
    /* batch 2 vs batch 1 and (x+1)/2 vs 0.5 (x+1): rounding-level differences only */
    assert_true(fabs(psnr - 10.0 * log10(N * DA_IMG_FLOATS / sq)) < 1e-3);
    assert_true(fabs(per.mean - sum / N) < 1e-3);
    assert_true(fabs(worst - lo) < 1e-3);
    assert_true(per.n == N && psnr <= per.mean + 1e-9 && worst <= per.mean);   /* Jensen, and the minimum */
}

/* ---- output files ---------------------------------------------------------------------- */

static const da_json_value *member(const da_json_value *o, const char *key)
{
    for (int i = 0; o && o->type == DA_JSON_OBJECT && i < o->n; i++)
        if (!strcmp(o->items[i].key, key)) return &o->items[i];
    fail_msg("metrics.json: no member '%s'", key);
    return NULL;
}

static double number(const da_json_value *v) { return strtod(v->str, NULL); }

static void test_write_outputs(void **state)
{
    (void)state;
    da_eval_config c = small_config();
    da_eval_result r;
    assert_int_equal(da_eval_base_run(g_pipe, &c, &r), DA_OK);
    const char *out = tmp_path("out/nested");   /* parents are created */
    assert_int_equal(da_eval_write(out, &c, &r, "w \"dir\"", "unet"), DA_OK);
    char p[300];
    size_t n;
    snprintf(p, sizeof p, "%s/metrics.json", out);
    char *js = tu_slurp(p, &n);
    da_json_value root;
    char err[128];
    if (da_json_parse(js, n, &root, err, sizeof err)) fail_msg("metrics.json: %s", err);
    assert_string_equal(member(&root, "weights")->str, "w \"dir\"");
    const da_json_value *cfg = member(&root, "config");
    assert_int_equal((int)number(member(cfg, "prompts")), 3);
    assert_int_equal((int)number(member(cfg, "batch")), 4);
    const char *keys[2] = {"held_in", "held_out"};
    for (int sp = 0; sp < 2; sp++) {
        const da_json_value *f = member(member(&root, keys[sp]), "faithfulness");
        assert_true(fabs(number(member(f, "mean")) - r.split[sp].faith.mean) < 1e-6);
        const da_json_value *ci = member(f, "ci95");
        assert_true(ci->type == DA_JSON_ARRAY && ci->n == 2);
        assert_true(fabs(number(&ci->items[1]) - number(&ci->items[0]) - 2.0 * r.split[sp].faith.half) < 1e-5);
        const da_json_value *cl = member(member(&root, keys[sp]), "clauses");
        for (int t = 0; t < DA_N_CLAUSE_TYPES; t++)
            assert_int_equal((long)number(member(member(cl, da_clause_type_name(t)), "n")), r.split[sp].type[t].n);
    }
    assert_true(fabs(number(member(member(&root, "vae"), "psnr")) - r.psnr) < 1e-3);
    da_json_free(&root);

    /* the same inputs, the same file (no timings or thread counts inside) */
    char *js2;
    da_eval_result r2;
    da_set_threads(1);
    assert_int_equal(da_eval_base_run(g_pipe, &c, &r2), DA_OK);
    da_set_threads(2);
    assert_int_equal(da_eval_write(out, &c, &r2, "w \"dir\"", "unet"), DA_OK);
    js2 = tu_slurp(p, NULL);
    assert_string_equal(js, js2);
    free(js);
    free(js2);

    /* the grid: 2 prompts per split, rows of 2 seeds, 1-pixel gaps, 4x */
    snprintf(p, sizeof p, "%s/grid.png", out);
    int w, h, ch;
    unsigned char *png = stbi_load(p, &w, &h, &ch, 3);
    assert_non_null(png);
    assert_int_equal(w, (2 * 33 - 1) * 4);
    assert_int_equal(h, (4 * 33 - 1) * 4);
    stbi_image_free(png);
    snprintf(p, sizeof p, "%s/table.md", out);
    char *md = tu_slurp(p, NULL);
    assert_non_null(strstr(md, "| held-in | 3 | 6 |"));
    assert_non_null(strstr(md, "| held-out | 3 | 6 |"));
    assert_non_null(strstr(md, "VAE reconstruction, 5 held-out"));
    free(md);
    snprintf(p, sizeof p, "%s/grid.txt", out);
    char *gt = tu_slurp(p, NULL);
    assert_non_null(strstr(gt, r.split[1].prompts + DA_CAPTION_MAX));   /* held-out prompt 1 is row 4 */
    assert_non_null(strstr(gt, "row 4 (held-out, prompt 1)"));
    free(gt);
    snprintf(p, sizeof p, "%s/prompts.tsv", out);
    char *tsv = tu_slurp(p, NULL);
    int lines = 0;
    for (char *q = tsv; *q; q++) lines += *q == '\n';
    assert_int_equal(lines, 1 + 2 * 3);
    free(tsv);
    /* no temp file left behind */
    DIR *d = opendir(out);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) fail_msg("temp file %s left in %s", e->d_name, out);
    closedir(d);
    /* a file where the directory should be */
    FILE *f = fopen(tmp_path("blocker"), "w");
    fclose(f);
    assert_int_equal(da_eval_write(tmp_path("blocker/x"), &c, &r, "w", "unet"), DA_ERR_IO);
    da_eval_result_free(&r);
    da_eval_result_free(&r2);
}

static void test_config_errors(void **state)
{
    (void)state;
    da_eval_config c = da_eval_config_default();
    assert_int_equal(da_eval_config_check(&c), DA_OK);
    assert_true(c.n_prompts >= 200 && c.n_seeds >= 4 && c.n_recon >= 200);   /* issue 3's minimum */
    da_eval_config bad[5] = {c, c, c, c, c};
    bad[0].n_prompts = 0;
    bad[1].n_seeds = DA_EVAL_MAX_SEEDS + 1;
    bad[2].batch = 0;
    bad[3].n_recon = -1;
    bad[4].opts.steps = 0;
    da_eval_result r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(da_eval_config_check(&bad[i]), DA_ERR_INVALID);
        assert_int_equal(da_eval_base_run(g_pipe, &bad[i], &r), DA_ERR_INVALID);
        da_eval_result_free(&r);
    }
}

/* ---- command line ---------------------------------------------------------------------- */

static int run_cli(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s eval-base %s > %s 2>&1", tu_cli_cmd(), args, tmp_path("cli.log"));
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_cli(void **state)
{
    (void)state;
    if (!g_bin[0]) skip();   /* the suite was run without the dalign binary next to it */
    char args[1024];
    snprintf(args, sizeof args, "--weights %s --n-prompts 2 --seeds 2 --steps 1 --recon 2 --batch 3 -o %s",
             tmp_path("weights"), tmp_path("cli_out"));
    assert_int_equal(run_cli(args), 0);
    const char *files[5] = {"metrics.json", "table.md", "grid.png", "grid.txt", "prompts.tsv"};
    for (int i = 0; i < 5; i++) {
        char p[300];
        snprintf(p, sizeof p, "cli_out/%s", files[i]);
        if (access(tmp_path(p), R_OK)) fail_msg("dalign eval-base did not write %s", files[i]);
    }
    char *log = tu_slurp(tmp_path("cli.log"), NULL);
    assert_non_null(strstr(log, "| held-out | 2 | 4 |"));   /* the table on stdout */
    assert_non_null(strstr(log, "eval-base: held-in"));      /* progress on stderr */
    free(log);
    assert_int_equal(run_cli("--help"), 0);
    assert_int_equal(run_cli("--n-prompts 0"), 2);
    assert_int_equal(run_cli("--prompts 2"), 2);   /* eval's prompt source, not a count */
    assert_int_equal(run_cli("--seeds x"), 2);
    assert_int_equal(run_cli("--bogus 1"), 2);
    assert_int_equal(run_cli("--batch"), 2);
    snprintf(args, sizeof args, "--weights %s -o %s", tmp_path("nowhere"), tmp_path("cli_out2"));
    assert_int_equal(run_cli(args), 1);
    log = tu_slurp(tmp_path("cli.log"), NULL);
    assert_non_null(strstr(log, "nowhere"));
    free(log);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prompts),
        cmocka_unit_test(test_image_seeds),
        cmocka_unit_test(test_cluster_mean),
        cmocka_unit_test(test_split_stats),
        cmocka_unit_test(test_score_ground_truth),
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_vae_psnr),
        cmocka_unit_test(test_write_outputs),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
