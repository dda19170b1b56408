/* PromptLoop's sampling loop (src/pipeline/promptloop.c) over tiny random
 * models: a writer that returns the prompt in use reproduces the base
 * sample bit for bit in every mode; refinements happen after exactly the
 * configured steps and see that step's x̂0 and timestep; a written prompt
 * conditions the following steps as a hand-made callback swap does; the
 * apriori and once modes observe no latent; with a random refiner an image
 * does not depend on its batch or the thread count; and the errors a user
 * can cause. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPER (4 * 8 * 8)
#define STEPS 8
#define M DA_MAX_TOKENS

static da_text_encoder *g_text;
static da_vae *g_vae;
static da_unet *g_unet;
static da_pipeline *g_pipe;
static da_refiner *g_ref;

static int setup(void **state)
{
    (void)state;
    da_rng rng;
    da_rng_seed(&rng, 21);
    da_text_config tc = {.vocab_size = da_vocab_size(), .context = DA_MAX_TOKENS, .d_model = 32,
                         .n_layers = 1, .n_heads = 2, .mlp_ratio = 2, .proj_dim = 16};
    da_vae_config vc = da_vae_config_default();
    vc.ch[0] = vc.ch[1] = 8;
    vc.ch[2] = 16;
    vc.groups = 4;
    da_unet_config uc = da_unet_config_default();
    uc.ch[0] = 16;
    uc.ch[1] = 32;
    uc.groups = 4;
    uc.n_heads = 2;
    uc.context_dim = 32;
    uc.time_freq_dim = 16;
    uc.time_dim = 32;
    da_refiner_config rc = da_refiner_config_default();
    rc.d_model = 32;
    rc.n_layers = 2;
    rc.time_freq_dim = 16;
    g_text = da_text_encoder_create(&tc, 0);
    g_vae = da_vae_create(&vc, 0);
    g_unet = da_unet_create(&uc, 0);
    g_ref = da_refiner_create(&rc, 0);
    if (!g_text || !g_vae || !g_unet || !g_ref) return -1;
    da_text_encoder_init(g_text, &rng);
    da_vae_init(g_vae, &rng);
    da_unet_init(g_unet, &rng);
    da_refiner_init(g_ref, &rng);
    return da_pipeline_create(&g_pipe, g_text, g_vae, g_unet, NULL) == DA_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    da_pipeline_free(g_pipe);
    da_text_encoder_free(g_text);
    da_vae_free(g_vae);
    da_unet_free(g_unet);
    da_refiner_free(g_ref);
    return 0;
}

static da_sample_opts opts_default(void)
{
    da_sample_opts o = da_sample_opts_default();
    o.steps = STEPS;
    return o;
}

static const char *const QUERIES[] = {"a red circle", "a small blue square left of a green triangle",
                                      "a yellow triangle on a black background"};
static const uint64_t SEEDS[] = {5, 6, 7};
static const uint64_t RSEEDS[] = {105, 106, 107};

/* ---- writers -------------------------------------------------------------------- */

/* returns the prompt in use, and logs what it was called with */
typedef struct call_log {
    int n;
    float timestep[64];
    float x0[64][NPER];
    int prompt[64][M];
} call_log;

static da_status identity_writer(void *user, const float *x0, float timestep, const int *query_ids,
                                 const uint8_t *query_keep, const int *prompt_ids, const uint8_t *prompt_keep,
                                 float temperature, da_rng *rng, int *out_ids, float *logprob)
{
    (void)query_ids; (void)query_keep; (void)prompt_keep; (void)temperature; (void)rng;
    call_log *log = user;
    if (log && log->n < 64) {
        log->timestep[log->n] = timestep;
        memcpy(log->x0[log->n], x0, sizeof log->x0[0]);
        memcpy(log->prompt[log->n], prompt_ids, sizeof log->prompt[0]);
        log->n++;
    }
    memcpy(out_ids, prompt_ids, M * sizeof(int));
    *logprob = 0.0f;
    return DA_OK;
}

/* writes one fixed prompt (user: its text) */
static da_status fixed_writer(void *user, const float *x0, float timestep, const int *query_ids,
                              const uint8_t *query_keep, const int *prompt_ids, const uint8_t *prompt_keep,
                              float temperature, da_rng *rng, int *out_ids, float *logprob)
{
    (void)x0; (void)timestep; (void)query_ids; (void)query_keep; (void)prompt_ids; (void)prompt_keep;
    (void)temperature; (void)rng;
    uint8_t keep[M];
    *logprob = 0.0f;
    return da_prompt_tokens((const char *)user, out_ids, keep);
}

/* writes texts[0], texts[1], texts[0], ... call after call */
typedef struct cycle_texts {
    const char *texts[2];
    int calls;
} cycle_texts;

static da_status cycle_writer(void *user, const float *x0, float timestep, const int *query_ids,
                              const uint8_t *query_keep, const int *prompt_ids, const uint8_t *prompt_keep,
                              float temperature, da_rng *rng, int *out_ids, float *logprob)
{
    cycle_texts *c = user;
    return fixed_writer((void *)c->texts[c->calls++ % 2], x0, timestep, query_ids, query_keep, prompt_ids,
                        prompt_keep, temperature, rng, out_ids, logprob);
}

/* writes BOS and no EOS: the pipeline must refuse it */
static da_status broken_writer(void *user, const float *x0, float timestep, const int *query_ids,
                               const uint8_t *query_keep, const int *prompt_ids, const uint8_t *prompt_keep,
                               float temperature, da_rng *rng, int *out_ids, float *logprob)
{
    (void)user; (void)x0; (void)timestep; (void)query_ids; (void)query_keep; (void)prompt_ids;
    (void)prompt_keep; (void)temperature; (void)rng;
    for (int j = 0; j < M; j++) out_ids[j] = j == 0 ? DA_TOK_BOS : da_vocab_id("red");
    *logprob = 0.0f;
    return DA_OK;
}

/* ---- tests ---------------------------------------------------------------------- */

/* the base sample (plain pipeline) of the three queries */
static void base_images(float *img, float *lat)
{
    da_sample_opts o = opts_default();
    assert_int_equal(da_pipeline_generate(g_pipe, &o, QUERIES, NULL, SEEDS, 3, NULL, NULL, img, lat), DA_OK);
}

static void test_identity_is_base(void **state)
{
    (void)state;
    float base[3 * DA_IMG_FLOATS], img[3 * DA_IMG_FLOATS];
    base_images(base, NULL);
    da_sample_opts o = opts_default();
    for (int mode = 0; mode < 3; mode++) {
        da_loop_opts lo = da_loop_opts_default();
        lo.mode = (da_refine_mode)mode;
        call_log log = {0};
        da_loop_trace tr;
        assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, identity_writer, &log, QUERIES, SEEDS, RSEEDS, 3,
                                               &tr, img, NULL),
                         DA_OK);
        char what[64];
        snprintf(what, sizeof what, "identity writer, mode %s", da_refine_mode_name(lo.mode));
        tu_assert_bits(what, img, base, 3 * DA_IMG_FLOATS);
        int K = da_loop_n_refine(&lo);
        assert_int_equal(tr.K, K);
        assert_int_equal(log.n, 3 * K);   /* one call per image and refinement */
        da_loop_trace_free(&tr);
    }
}

/* loop mode, K = 4 over 8 steps: after steps 0, 2, 4, 6; each call sees the
 * x̂0 and timestep of its step (the identity keeps the base trajectory, so
 * they are the base run's, recorded by a plain callback) and the prompt the
 * previous refinement wrote */
typedef struct base_x0 {
    float x0[STEPS][3 * NPER];
    float t[STEPS];
} base_x0;

static int record_x0(da_step_info *info, void *user)
{
    base_x0 *b = user;
    memcpy(b->x0[info->step], info->x0, sizeof b->x0[0]);
    b->t[info->step] = info->timestep;
    return 0;
}

static void test_refinement_steps(void **state)
{
    (void)state;
    da_sample_opts o = opts_default();
    base_x0 *base = malloc(sizeof *base);
    assert_non_null(base);
    assert_int_equal(da_pipeline_generate(g_pipe, &o, QUERIES, NULL, SEEDS, 3, record_x0, base, NULL, NULL), DA_OK);
    float times[STEPS];
    assert_int_equal(da_sampler_timesteps(g_pipe, &o, times), DA_OK);
    for (int s = 0; s < STEPS; s++) assert_true(times[s] == base->t[s]);

    da_loop_opts lo = da_loop_opts_default();   /* loop, K = 4 */
    const int want_steps[4] = {0, 2, 4, 6};
    call_log *log = calloc(1, sizeof *log);
    da_loop_trace tr;
    assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, identity_writer, log, QUERIES, SEEDS, RSEEDS, 3, &tr,
                                           NULL, NULL),
                     DA_OK);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(tr.steps[k], want_steps[k]);
        assert_int_equal(da_loop_refine_step(&lo, k, STEPS), want_steps[k]);
        for (int i = 0; i < 3; i++) {
            int call = k * 3 + i;   /* refinement k visits images 0, 1, 2 in order */
            assert_true(log->timestep[call] == base->t[want_steps[k]]);
            tu_assert_bits("observed x0", log->x0[call], base->x0[want_steps[k]] + i * NPER, NPER);
            tu_assert_bits("trace x0", tr.x0 + ((size_t)i * 4 + k) * NPER, base->x0[want_steps[k]] + i * NPER,
                           NPER);
            assert_memory_equal(log->prompt[call], tr.query_ids + i * M, M * sizeof(int));
        }
    }
    /* 20 steps and K = 4: the paper's spread (5 over 50) at our length */
    for (int k = 0; k < 4; k++) assert_int_equal(da_loop_refine_step(&lo, k, 20), 5 * k);
    lo.mode = DA_REFINE_ONCE;
    assert_int_equal(da_loop_refine_step(&lo, 0, 20), -1);
    da_loop_trace_free(&tr);

    /* a window: K = 3 over steps [1, 7) refines after steps 1, 3, 5 and
     * reads those steps' x̂0 */
    lo = da_loop_opts_default();
    lo.n_refine = 3;
    lo.window_first = 1;
    lo.window_end = 7;
    const int want_win[3] = {1, 3, 5};
    memset(log, 0, sizeof *log);
    assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, identity_writer, log, QUERIES, SEEDS, RSEEDS, 3, &tr,
                                           NULL, NULL),
                     DA_OK);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(tr.steps[k], want_win[k]);
        for (int i = 0; i < 3; i++) {
            int call = k * 3 + i;
            assert_true(log->timestep[call] == base->t[want_win[k]]);
            tu_assert_bits("observed x0, window", log->x0[call], base->x0[want_win[k]] + i * NPER, NPER);
        }
    }
    assert_int_equal(log->n, 3 * 3);
    char text[64];
    da_loop_steps_text(&lo, STEPS, text, sizeof text);
    assert_string_equal(text, "after steps 1, 3, 5");
    /* the early window of docs/promptloop.md: 4 over [1, 5) on 20 steps */
    lo.n_refine = 4;
    lo.window_end = 5;
    for (int k = 0; k < 4; k++) assert_int_equal(da_loop_refine_step(&lo, k, 20), 1 + k);
    /* an end of 0 is the trajectory's */
    lo.window_first = 2;
    lo.window_end = 0;
    for (int k = 0; k < 4; k++) assert_int_equal(da_loop_refine_step(&lo, k, 10), 2 + 2 * k);
    lo = da_loop_opts_default();
    da_loop_steps_text(&lo, 20, text, sizeof text);
    assert_string_equal(text, "after steps 0, 5, 10, 15");
    da_loop_steps_text(&lo, 20, text, 12);   /* cut short */
    assert_string_equal(text, "after st...");
    lo.mode = DA_REFINE_ONCE;
    da_loop_steps_text(&lo, 20, text, sizeof text);
    assert_string_equal(text, "before step 0");
    da_loop_trace_free(&tr);
    free(log);
    free(base);
}

/* A fixed written prompt conditions the following steps: loop mode with
 * K = 2 over 8 steps equals a plain run whose callback swaps to that prompt
 * after step 0 (the pipeline's own, separately tested swap); once equals a
 * plain run of that prompt. apriori and once observe a zero latent, at the
 * timestep of their step. */
typedef struct swap_at { int step; const char *prompt[3]; } swap_at;
static int swap_cb(da_step_info *info, void *user)
{
    swap_at *s = user;
    if (info->step == s->step) info->new_prompts = s->prompt;
    return 0;
}

static void test_written_prompt_conditions(void **state)
{
    (void)state;
    const char *written = "a large purple square";
    da_sample_opts o = opts_default();
    float want[3 * DA_IMG_FLOATS], got[3 * DA_IMG_FLOATS];
    swap_at sw = {0, {written, written, written}};
    assert_int_equal(da_pipeline_generate(g_pipe, &o, QUERIES, NULL, SEEDS, 3, swap_cb, &sw, want, NULL), DA_OK);
    da_loop_opts lo = da_loop_opts_default();
    lo.n_refine = 1;
    assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, fixed_writer, (void *)written, QUERIES, SEEDS, RSEEDS,
                                           3, NULL, got, NULL),
                     DA_OK);
    tu_assert_bits("loop, K = 1", got, want, 3 * DA_IMG_FLOATS);
    lo.mode = DA_REFINE_APRIORI;
    assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, fixed_writer, (void *)written, QUERIES, SEEDS, RSEEDS,
                                           3, NULL, got, NULL),
                     DA_OK);
    tu_assert_bits("apriori, K = 1", got, want, 3 * DA_IMG_FLOATS);

    const char *all[3] = {written, written, written};
    assert_int_equal(da_pipeline_generate(g_pipe, &o, all, NULL, SEEDS, 3, NULL, NULL, want, NULL), DA_OK);
    lo.mode = DA_REFINE_ONCE;
    da_loop_trace tr;
    assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, fixed_writer, (void *)written, QUERIES, SEEDS, RSEEDS,
                                           3, &tr, got, NULL),
                     DA_OK);
    tu_assert_bits("once", got, want, 3 * DA_IMG_FLOATS);
    float times[STEPS];
    assert_int_equal(da_sampler_timesteps(g_pipe, &o, times), DA_OK);
    assert_true(tr.timesteps[0] == times[0]);
    for (int j = 0; j < 3 * NPER; j++) assert_true(tr.x0[j] == 0.0f);
    da_loop_trace_free(&tr);

    lo.mode = DA_REFINE_APRIORI;
    lo.n_refine = 4;
    assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, fixed_writer, (void *)written, QUERIES, SEEDS, RSEEDS,
                                           3, &tr, NULL, NULL),
                     DA_OK);
    for (int r = 0; r < 12; r++) assert_true(tr.timesteps[r] == times[2 * (r % 4)]);
    for (int j = 0; j < 12 * NPER; j++) assert_true(tr.x0[j] == 0.0f);
    /* refinement k > 0 reads what k - 1 wrote */
    assert_memory_equal(tr.prompt_ids + 1 * M, tr.out_ids, M * sizeof(int));
    da_loop_trace_free(&tr);
}

/* keep_meaning: a rewrite that means something else is discarded (every mode
 * then reproduces the base sample bit for bit; the trace keeps the written
 * tokens in out_ids, the RL trainer's actions, and the kept prompt in
 * used_ids); a rewrite that means the query (another phrasing of the same
 * scene) is used, exactly as without the flag; after a discarded rewrite
 * the next refinement reads the prompt the image kept. */
static void test_keep_meaning(void **state)
{
    (void)state;
    const char *query[1] = {"a small blue square left of a green triangle"};
    const char *other = "a large purple square";                      /* another scene */
    const char *same = "a green triangle right of a small blue square"; /* the same scene */
    da_sample_opts o = opts_default();
    float base[DA_IMG_FLOATS], got[DA_IMG_FLOATS], want[DA_IMG_FLOATS];
    assert_int_equal(da_pipeline_generate(g_pipe, &o, query, NULL, SEEDS, 1, NULL, NULL, base, NULL), DA_OK);
    int query_ids[M];
    uint8_t keep[M];
    assert_int_equal(da_prompt_tokens(query[0], query_ids, keep), DA_OK);
    for (int mode = 0; mode < 3; mode++) {
        da_loop_opts lo = da_loop_opts_default();
        lo.mode = (da_refine_mode)mode;
        lo.keep_meaning = 1;
        da_loop_trace tr;
        assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, fixed_writer, (void *)other, query, SEEDS, RSEEDS, 1,
                                               &tr, got, NULL),
                         DA_OK);
        tu_assert_bits("keep_meaning, another scene written", got, base, DA_IMG_FLOATS);
        int other_ids[M];
        assert_int_equal(da_prompt_tokens(other, other_ids, keep), DA_OK);
        for (int k = 0; k < tr.K; k++) {
            assert_memory_equal(tr.used_ids + k * M, query_ids, M * sizeof(int));
            assert_memory_equal(tr.out_ids + k * M, other_ids, M * sizeof(int));
        }
        da_loop_trace_free(&tr);

        /* the same scene in other words: used, as without the flag */
        lo.keep_meaning = 0;
        assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, fixed_writer, (void *)same, query, SEEDS, RSEEDS, 1,
                                               NULL, want, NULL),
                         DA_OK);
        lo.keep_meaning = 1;
        assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, fixed_writer, (void *)same, query, SEEDS, RSEEDS, 1,
                                               NULL, got, NULL),
                         DA_OK);
        tu_assert_bits("keep_meaning, a paraphrase written", got, want, DA_IMG_FLOATS);
        /* and the paraphrase did change the sample: the test can tell the two apart */
        int differs = 0;
        for (int j = 0; j < DA_IMG_FLOATS; j++) differs |= got[j] != base[j];
        assert_true(differs);
        if (mode == DA_REFINE_ONCE) continue;

        /* the paraphrase, then another scene, then the paraphrase, ...: every
         * other rewrite discarded, the image keeps the paraphrase throughout */
        cycle_texts cyc = {{same, other}, 0};
        assert_int_equal(da_loop_generate_with(g_pipe, &o, &lo, cycle_writer, &cyc, query, SEEDS, RSEEDS, 1, &tr,
                                               got, NULL),
                         DA_OK);
        tu_assert_bits("keep_meaning, paraphrase and another scene in turn", got, want, DA_IMG_FLOATS);
        int same_ids[M];
        assert_int_equal(da_prompt_tokens(same, same_ids, keep), DA_OK);
        for (int k = 0; k < tr.K; k++) {
            assert_memory_equal(tr.out_ids + k * M, k % 2 ? other_ids : same_ids, M * sizeof(int));
            assert_memory_equal(tr.used_ids + k * M, same_ids, M * sizeof(int));
            if (k > 0) assert_memory_equal(tr.prompt_ids + k * M, tr.used_ids + (k - 1) * M, M * sizeof(int));
        }
        da_loop_trace_free(&tr);
    }
}

/* With the (random) refiner at temperature 1: every written row is BOS ..
 * EOS PAD.., log-probs finite and <= 0; three images in one batch equal
 * three single-image runs; 1 and 2 threads give the same bits; the same
 * refine seed gives the same prompts and other seeds other prompts. */
static void run_refiner(const da_loop_opts *lo, int n, const char *const *q, const uint64_t *seeds,
                        const uint64_t *rseeds, da_loop_trace *tr, float *img)
{
    da_sample_opts o = opts_default();
    da_status s = da_loop_generate(g_pipe, g_ref, &o, lo, q, seeds, rseeds, n, tr, img, NULL);
    if (s != DA_OK) fail_msg("da_loop_generate: %s", da_last_error());
}

static void test_refiner_batch_threads(void **state)
{
    (void)state;
    for (int mode = 0; mode < 3; mode++) {
        da_loop_opts lo = da_loop_opts_default();
        lo.mode = (da_refine_mode)mode;
        lo.temperature = 1.0f;
        int K = da_loop_n_refine(&lo);
        float all[3 * DA_IMG_FLOATS], one[DA_IMG_FLOATS], two[3 * DA_IMG_FLOATS];
        da_loop_trace tr, t1;
        run_refiner(&lo, 3, QUERIES, SEEDS, RSEEDS, &tr, all);
        for (int r = 0; r < 3 * K; r++) {
            const int *row = tr.out_ids + (size_t)r * M;
            assert_int_equal(row[0], DA_TOK_BOS);
            int j = 1;
            while (j < M && row[j] != DA_TOK_EOS) assert_true(row[j++] > DA_TOK_UNK);
            assert_true(j < M);
            for (j++; j < M; j++) assert_int_equal(row[j], DA_TOK_PAD);
            assert_true(isfinite(tr.logprobs[r]) && tr.logprobs[r] <= 0.0f);
        }
        for (int i = 0; i < 3; i++) {
            run_refiner(&lo, 1, QUERIES + i, SEEDS + i, RSEEDS + i, &t1, one);
            tu_assert_bits("image alone vs in a batch", one, all + (size_t)i * DA_IMG_FLOATS, DA_IMG_FLOATS);
            assert_memory_equal(t1.out_ids, tr.out_ids + (size_t)i * K * M, (size_t)K * M * sizeof(int));
            tu_assert_bits("log-probs alone vs in a batch", t1.logprobs, tr.logprobs + (size_t)i * K, (size_t)K);
            da_loop_trace_free(&t1);
        }
        int saved = da_get_threads();
        da_set_threads(saved == 1 ? 2 : 1);
        run_refiner(&lo, 3, QUERIES, SEEDS, RSEEDS, &t1, two);
        da_set_threads(saved);
        tu_assert_bits("1 vs 2 threads", two, all, 3 * DA_IMG_FLOATS);
        assert_memory_equal(t1.out_ids, tr.out_ids, (size_t)3 * K * M * sizeof(int));
        da_loop_trace_free(&t1);

        /* other refine seeds: other prompts somewhere (a random refiner at
         * temperature 1 over 30 words) */
        const uint64_t other[3] = {900, 901, 902};
        run_refiner(&lo, 3, QUERIES, SEEDS, other, &t1, NULL);
        assert_true(memcmp(t1.out_ids, tr.out_ids, (size_t)3 * K * M * sizeof(int)) != 0);
        da_loop_trace_free(&t1);
        da_loop_trace_free(&tr);
    }
}

static void expect_error(da_status got, const char *needle)
{
    assert_int_equal(got, DA_ERR_INVALID);
    if (!strstr(da_last_error(), needle)) fail_msg("error '%s' does not contain '%s'", da_last_error(), needle);
}

static void test_errors(void **state)
{
    (void)state;
    da_sample_opts o = opts_default();
    da_loop_opts lo = da_loop_opts_default();
    float img[DA_IMG_FLOATS];
    lo.n_refine = 0;
    expect_error(da_loop_generate(g_pipe, g_ref, &o, &lo, QUERIES, SEEDS, RSEEDS, 1, NULL, img, NULL),
                 "refinements do not fit");
    lo.n_refine = STEPS + 1;
    expect_error(da_loop_generate(g_pipe, g_ref, &o, &lo, QUERIES, SEEDS, RSEEDS, 1, NULL, img, NULL),
                 "refinements do not fit");
    lo = da_loop_opts_default();
    lo.temperature = -1.0f;
    expect_error(da_loop_generate(g_pipe, g_ref, &o, &lo, QUERIES, SEEDS, RSEEDS, 1, NULL, img, NULL),
                 "temperature");
    /* windows that do not fit: empty, past the trajectory, narrower than K,
     * or given to once */
    const int bad_win[4][3] = {{3, 3, 1}, {0, STEPS + 1, 4}, {2, 4, 3}, {-1, 4, 2}};
    const char *why[4] = {"does not fit a trajectory", "does not fit a trajectory", "do not fit the window 2:4",
                          "does not fit a trajectory"};
    for (int c = 0; c < 4; c++) {
        lo = da_loop_opts_default();
        lo.window_first = bad_win[c][0];
        lo.window_end = bad_win[c][1];
        lo.n_refine = bad_win[c][2];
        expect_error(da_loop_generate(g_pipe, g_ref, &o, &lo, QUERIES, SEEDS, RSEEDS, 1, NULL, img, NULL), why[c]);
    }
    lo = da_loop_opts_default();
    lo.mode = DA_REFINE_ONCE;
    lo.window_first = 1;
    expect_error(da_loop_generate(g_pipe, g_ref, &o, &lo, QUERIES, SEEDS, RSEEDS, 1, NULL, img, NULL),
                 "needs mode loop or apriori");
    lo = da_loop_opts_default();
    const char *bad[1] = {"a xyzzy circle"};
    expect_error(da_loop_generate(g_pipe, g_ref, &o, &lo, bad, SEEDS, RSEEDS, 1, NULL, img, NULL), "xyzzy");
    expect_error(da_loop_generate(g_pipe, NULL, &o, &lo, QUERIES, SEEDS, RSEEDS, 1, NULL, img, NULL),
                 "NULL refiner");
    /* a refiner of another vocabulary */
    da_refiner_config rc = g_ref->cfg;
    rc.vocab_size = da_vocab_size() + 1;
    da_refiner *other = da_refiner_create(&rc, 0);
    assert_non_null(other);
    expect_error(da_loop_generate(g_pipe, other, &o, &lo, QUERIES, SEEDS, RSEEDS, 1, NULL, img, NULL),
                 "vocabulary");
    da_refiner_free(other);
    /* a writer whose prompt has no EOS: refused, naming the step */
    da_loop_trace tr;
    memset(&tr, 0, sizeof tr);
    expect_error(da_loop_generate_with(g_pipe, &o, &lo, broken_writer, NULL, QUERIES, SEEDS, RSEEDS, 1, &tr, img,
                                       NULL),
                 "no EOS");
    assert_null(tr.out_ids);   /* freed on error */
    da_refine_mode m;
    expect_error(da_refine_mode_parse("closed", &m), "closed");
    assert_int_equal(da_refine_mode_parse("apriori", &m), DA_OK);
    assert_int_equal(m, DA_REFINE_APRIORI);
}

/* dalign sample --refiner over tiny weights: -v prints the prompt each
 * refinement wrote and draws the loop strip; the refine options without a
 * refiner, a missing refiner file and too many refinements are refused. */
static int sample_cli(const char *dir, const char *args, const char *log)
{
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "%s sample --weights %s %s > %s 2>&1", tu_cli_cmd(), dir, args, log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void expect_sample(const char *dir, const char *args, int rc, const char *text)
{
    char log[256];
    snprintf(log, sizeof log, "%s/sample.log", dir);
    int got = sample_cli(dir, args, log);
    char *out = tu_slurp(log, NULL);
    if (got != rc || (text && !strstr(out, text)))
        fail_msg("dalign sample %s: exit %d (want %d), log:\n%s", args, got, rc, out);
    free(out);
}

static void test_sample_cli(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();   /* the suite was run without the dalign binary next to it */
    char dir[] = "/tmp/dalign_loop_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tu_tiny_weights(dir), 0);
    char p[512], args[1024];
    da_refiner_config rc = g_ref->cfg;
    snprintf(p, sizeof p, "%s/ref.json", dir);
    assert_int_equal(da_refiner_config_save(&rc, p), DA_OK);
    snprintf(p, sizeof p, "%s/ref.safetensors", dir);
    assert_int_equal(da_refiner_save(g_ref, p), DA_OK);
    snprintf(args, sizeof args, "--prompt 'a red circle' --refiner ref --refine-steps 2 --steps 4 --n 2 --grid -v -o %s/x.png",
             dir);
    expect_sample(dir, args, 0, "after step 0 (t ");   /* K = 2 over 4 steps: 0 and 2, counted from 0 */
    expect_sample(dir, args, 0, "after step 2 (t ");
    snprintf(p, sizeof p, "%s/x-loop.png", dir);
    assert_int_equal(access(p, R_OK), 0);
    expect_sample(dir, "--prompt 'a red circle' --refine-mode once -o /tmp/x.png", 2, "need --refiner");
    expect_sample(dir, "--prompt 'a red circle' --refiner ref --refine-steps 30 -o /tmp/x.png", 2,
                  "more refinements than the 20 sampler steps");
    snprintf(args, sizeof args, "--prompt 'a red circle' --refiner %s/none.safetensors -o %s/y.png", dir, dir);
    expect_sample(dir, args, 1, "refiner file");
    tu_rm_tree(dir);
}

/* g_ref saved as dir/NAME.{json,safetensors}, with one metadata entry
 * key = value (key NULL: none), as dalign train promptloop writes them */
static void save_ref(const char *dir, const char *name, const char *key, const char *value)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s.json", dir, name);
    assert_int_equal(da_refiner_config_save(&g_ref->cfg, p), DA_OK);
    snprintf(p, sizeof p, "%s/%s.safetensors", dir, name);
    da_st_meta meta = {(char *)key, (char *)value};
    assert_int_equal(da_params_save(&g_ref->params, p, &meta, key ? 1 : 0), DA_OK);
}

/* The guard follows the refiner's training unless told: a refiner whose
 * file says refine_keep_meaning (dalign train promptloop
 * --refine-keep-meaning) runs with it, so the random refiner here, which
 * never writes the query's meaning, leaves the base image bit for bit;
 * --no-refine-keep-meaning lets its rewrites through (another image), and a
 * refiner trained without the guard runs without it. */
static void test_sample_cli_keep_meaning(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    char dir[] = "/tmp/dalign_loop_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tu_tiny_weights(dir), 0);
    char p[512], q[512], args[1024];
    save_ref(dir, "ref", NULL, NULL);
    save_ref(dir, "ref-keep", "refine_keep_meaning", "true");
    int keep;
    assert_int_equal(da_weights_refiner_keep_meaning(dir, "ref-keep", &keep), DA_OK);
    assert_int_equal(keep, 1);
    assert_int_equal(da_weights_refiner_keep_meaning(dir, "ref", &keep), DA_OK);
    assert_int_equal(keep, 0);
    assert_int_not_equal(da_weights_refiner_keep_meaning(dir, "none", &keep), DA_OK);

    const char *prompt = "--prompt 'a red circle' --steps 4 --seed 3";
    snprintf(args, sizeof args, "%s -o %s/base.png", prompt, dir);
    expect_sample(dir, args, 0, NULL);
    snprintf(args, sizeof args, "%s --refiner ref-keep --refine-steps 2 -v -o %s/keep.png", prompt, dir);
    expect_sample(dir, args, 0, "keep meaning on");
    expect_sample(dir, args, 0, "was trained with --refine-keep-meaning");
    snprintf(p, sizeof p, "%s/base.png", dir);
    snprintf(q, sizeof q, "%s/keep.png", dir);
    assert_true(tu_same_file(p, q));
    snprintf(args, sizeof args, "%s --refiner ref-keep --refine-steps 2 --no-refine-keep-meaning -v -o %s/free.png",
             prompt, dir);
    expect_sample(dir, args, 0, "keep meaning off");
    snprintf(q, sizeof q, "%s/free.png", dir);
    assert_false(tu_same_file(p, q));
    snprintf(args, sizeof args, "%s --refiner ref --refine-steps 2 -v -o %s/ref.png", prompt, dir);
    expect_sample(dir, args, 0, "keep meaning off");
    snprintf(args, sizeof args, "%s --no-refine-keep-meaning -o %s/x.png", prompt, dir);
    expect_sample(dir, args, 2, "need --refiner");
    tu_rm_tree(dir);
}

/* The refinement window follows the refiner's training the same way: a
 * file that says refine_window 1:3 refines after steps 1 and 2 unless
 * --refine-window says otherwise; a bad window is refused before sampling,
 * and so is a file whose window is not FIRST:END. */
static void test_sample_cli_window(void **state)
{
    (void)state;
    if (!tu_cli_path()[0]) skip();
    char dir[] = "/tmp/dalign_loop_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tu_tiny_weights(dir), 0);
    char args[1024];
    save_ref(dir, "ref-win", "refine_window", "1:3");
    save_ref(dir, "ref-bad", "refine_window", "3");
    save_ref(dir, "plain", NULL, NULL);   /* no key: the whole trajectory */
    int first, end;
    assert_int_equal(da_weights_refiner_window(dir, "ref-win", &first, &end), DA_OK);
    assert_int_equal(first, 1);
    assert_int_equal(end, 3);
    assert_int_equal(da_weights_refiner_window(dir, "ref-bad", &first, &end), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), "is not FIRST:END"));
    assert_int_equal(da_weights_refiner_window(dir, "plain", &first, &end), DA_OK);
    assert_true(first == 0 && end == 0);

    const char *prompt = "--prompt 'a red circle' --steps 4 --seed 3";
    snprintf(args, sizeof args, "%s --refiner ref-win --refine-steps 2 -v -o %s/w.png", prompt, dir);
    expect_sample(dir, args, 0, "(after steps 1, 2)");
    expect_sample(dir, args, 0, "was trained with --refine-window 1:3");
    snprintf(args, sizeof args, "%s --refiner ref-win --refine-steps 2 --refine-window 0:4 -v -o %s/w.png", prompt,
             dir);
    expect_sample(dir, args, 0, "(after steps 0, 2)");
    snprintf(args, sizeof args, "%s --refiner plain --refine-steps 2 -v -o %s/w.png", prompt, dir);
    expect_sample(dir, args, 0, "(after steps 0, 2)");
    snprintf(args, sizeof args, "%s --refiner plain --refine-steps 3 --refine-window 2:4 -o %s/w.png", prompt, dir);
    expect_sample(dir, args, 2, "do not fit the window 2:4");
    snprintf(args, sizeof args, "%s --refiner plain --refine-window 2:9 -o %s/w.png", prompt, dir);
    expect_sample(dir, args, 2, "does not fit a trajectory of 4 steps");
    const char *malformed[4] = {"3-4", "4294967297:4294967299", "' 1:3'", "+1:3"};
    for (int i = 0; i < 4; i++) {
        snprintf(args, sizeof args, "%s --refiner plain --refine-window %s -o %s/w.png", prompt, malformed[i], dir);
        expect_sample(dir, args, 2, "FIRST:END");
    }
    /* the file's window is checked against --steps before sampling */
    snprintf(args, sizeof args, "--prompt 'a red circle' --steps 2 --refiner ref-win --refine-steps 2 -o %s/w.png",
             dir);
    expect_sample(dir, args, 2, "choose one with --refine-window");
    /* once writes before step 0: the file's window does not apply */
    snprintf(args, sizeof args, "%s --refiner ref-win --refine-mode once -v -o %s/w.png", prompt, dir);
    expect_sample(dir, args, 0, "(before step 0)");
    snprintf(args, sizeof args, "%s --refiner ref-bad -o %s/w.png", prompt, dir);
    expect_sample(dir, args, 1, "is not FIRST:END");
    snprintf(args, sizeof args, "%s --refine-window 1:3 -o %s/w.png", prompt, dir);
    expect_sample(dir, args, 2, "need --refiner");
    tu_rm_tree(dir);
}

/* No da_threads_init() here, on purpose: a library user may never call it,
 * and the bits must not depend on that (the NO_OMP build once let OpenBLAS
 * thread the first run on its own; gemm.c now pins it). */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_is_base),
        cmocka_unit_test(test_refinement_steps),
        cmocka_unit_test(test_written_prompt_conditions),
        cmocka_unit_test(test_keep_meaning),
        cmocka_unit_test(test_refiner_batch_threads),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_sample_cli),
        cmocka_unit_test(test_sample_cli_keep_meaning),
        cmocka_unit_test(test_sample_cli_window),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
