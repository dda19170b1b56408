/* PromptLoop's RL trainer (src/train/promptloop.c) over tiny random models:
 * a run writes the refiner and its health metrics; the first update of an
 * iteration has every ratio exactly 1 (the old log-probs are the policy's
 * own); a run stopped between two updates of one rollout batch resumes bit
 * for bit (the buffer is in the checkpoint); 1 and 2 threads give the same
 * weights; with keep_meaning the buffer still holds the sampled tokens;
 * one update raises the ratio surrogate of the rollouts it learnt from;
 * bad options and a mismatched resume are refused by name. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/queries.h"

static char g_dir[64];

static const char *path_in(const char *name)
{
    static char buf[8][320];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/dalign_pl_XXXXXX");
    if (!mkdtemp(g_dir) || tu_tiny_weights(g_dir)) return -1;
    da_refiner_config rc = da_refiner_config_default();
    rc.d_model = 16;
    rc.n_layers = 1;
    rc.n_heads = 2;
    rc.time_freq_dim = 8;
    da_refiner *ref = da_refiner_create(&rc, 0);
    if (!ref) return -1;
    da_rng rng;
    da_rng_seed(&rng, 3);
    da_refiner_init(ref, &rng);
    int bad = da_refiner_config_save(&rc, path_in("refiner-ref.json")) ||
              da_refiner_save(ref, path_in("refiner-ref.safetensors"));
    da_refiner_free(ref);
    return bad ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* 2 queries x 2 rollouts, 2 refinements over 4 sampler steps, 2 epochs x
 * 1 minibatch: 2 updates per iteration, 2 iterations */
static void small_run(da_trainer_config *tc, da_promptloop_opts *o, const char *name)
{
    *o = da_promptloop_defaults();
    o->weights_dir = g_dir;
    o->name = name;
    o->queries = 2;
    o->group = 2;
    o->loop.n_refine = 2;
    o->sample.steps = 4;
    o->epochs = 2;
    o->minibatches = 1;
    o->force = 1;
    /* random tiny models draw no recognisable shapes: faithfulness would be
     * 0 for every rollout (zero advantages, nothing to learn); colourfulness
     * varies from image to image */
    o->reward = "colorful";
    da_promptloop_trainer_defaults(tc, o);
    tc->total_steps = 4;
    tc->lr = tc->min_lr = 1e-3f;   /* large enough that a lost buffer would show */
    tc->progress = 0;
    tc->seed = 9;
}

/* tensor key of g_dir/file as floats (n of them, or any number when n is
 * 0); the caller frees it */
static float *tensor_of(const char *file, const char *key, size_t n)
{
    da_safetensors *st;
    if (da_st_open(path_in(file), &st) != DA_OK) fail_msg("%s: %s", file, da_last_error());
    const da_st_tensor *t = da_st_find(st, key);
    if (!t || (n && t->numel != n)) fail_msg("%s: %s missing or not of %zu values", file, key, n);
    float *v = malloc(t->numel * sizeof(float));
    da_st_to_f32(st, t, v);
    da_st_close(st);
    return v;
}

static float *weights_of(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s.safetensors", name);
    return tensor_of(p, "lm_head.weight", 0);
}

/* every "lp_gap" of a metrics log: the buffer's teacher-forced log-probs
 * must sum to what the writer drew (rounding only) */
static void assert_lp_gaps_small(const char *log)
{
    int n = 0;
    for (const char *p = strstr(log, "\"lp_gap\":"); p; p = strstr(p + 1, "\"lp_gap\":"), n++) {
        double gap = strtod(p + 9, NULL);
        /* float sums of <= 22 log-probs of one prompt, computed two ways
         * (incremental generation, batched teacher forcing): about 1e-6;
         * a row holding other tokens than the sampled ones is off by O(1) */
        if (!(gap < 1e-3)) fail_msg("lp_gap %g: the buffer does not hold the sampled tokens", gap);
    }
    assert_true(n > 0);
}

static void test_run_and_metrics(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_promptloop_opts o;
    small_run(&tc, &o, "pl-a");
    tc.metrics_path = path_in("pl-a.metrics.jsonl");
    da_promptloop_result r;
    if (da_promptloop_run(&tc, &o, &r) != DA_OK) fail_msg("run: %s", da_last_error());
    assert_int_equal(r.steps, 4);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(access(path_in("pl-a.json"), R_OK), 0);
    da_refiner *back;
    assert_int_equal(da_weights_load_refiner(&back, g_dir, "pl-a"), DA_OK);
    da_refiner_free(back);
    char *log = tu_slurp(path_in("pl-a.metrics.jsonl"), NULL);
    const char *keys[] = {"\"reward\":", "\"zero_std\":", "\"faith\":", "\"prompt_len\":", "\"parse\":",
                          "\"meaning\":", "\"clip_frac\":", "\"kl\":", "\"ratio\":"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strstr(log, keys[i])) fail_msg("metrics lack %s:\n%s", keys[i], log);
    /* step 1 is the first update of iteration 1: the ratio is exactly 1 */
    const char *first = strstr(log, "\"step\":1,");
    assert_non_null(first);
    const char *ratio = strstr(first, "\"ratio\":");
    assert_non_null(ratio);
    assert_true(strncmp(ratio, "\"ratio\":1,", 10) == 0 || strncmp(ratio, "\"ratio\":1}", 10) == 0);
    assert_non_null(strstr(first, "\"clip_frac\":0,"));
    assert_lp_gaps_small(log);
    /* the rewards differed within groups, and the weights moved */
    assert_null(strstr(log, "\"zero_std\":1,"));
    float *a = weights_of("pl-a");
    float *init = weights_of("refiner-ref");
    assert_true(memcmp(a, init, 34 * 16 * sizeof(float)) != 0);
    free(log);
    free(a);
    free(init);
}

/* stopped after update 3 (the middle of iteration 2), resumed: the same
 * weights as the uninterrupted run; and 2 threads the same as 1 */
static void test_resume_and_threads(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_promptloop_opts o;
    small_run(&tc, &o, "pl-full");
    int saved = da_get_threads();
    da_set_threads(1);
    assert_int_equal(da_promptloop_run(&tc, &o, NULL), DA_OK);
    da_set_threads(2);
    small_run(&tc, &o, "pl-2t");
    assert_int_equal(da_promptloop_run(&tc, &o, NULL), DA_OK);
    da_set_threads(saved);

    small_run(&tc, &o, "pl-stop");
    tc.stop_at = 3;
    tc.ckpt_path = path_in("pl-stop.ckpt");
    da_promptloop_result r;
    assert_int_equal(da_promptloop_run(&tc, &o, &r), DA_OK);
    assert_int_equal(r.steps, 3);
    assert_int_not_equal(access(path_in("pl-stop.safetensors"), R_OK), 0);   /* not final: no weights */
    small_run(&tc, &o, "pl-stop");
    tc.ckpt_path = path_in("pl-stop.ckpt");
    o.resume = path_in("pl-stop.ckpt");
    if (da_promptloop_run(&tc, &o, &r) != DA_OK) fail_msg("resume: %s", da_last_error());
    assert_int_equal(r.steps, 4);

    float *full = weights_of("pl-full"), *two = weights_of("pl-2t"), *res = weights_of("pl-stop");
    tu_assert_bits("2 threads vs 1", two, full, 34 * 16);
    tu_assert_bits("resumed vs uninterrupted", res, full, 34 * 16);
    free(full);
    free(two);
    free(res);

    /* a resume with other options is refused, naming why */
    small_run(&tc, &o, "pl-other");
    o.group = 3;
    da_promptloop_trainer_defaults(&tc, &o);
    tc.total_steps = 4;
    tc.progress = 0;
    tc.seed = 9;
    tc.lr = tc.min_lr = 1e-3f;
    o.resume = path_in("pl-stop.ckpt");
    assert_int_not_equal(da_promptloop_run(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "cannot resume"));
}

/* the metadata value key of g_dir/file, or NULL: the caller frees it */
static char *meta_value(const char *file, const char *key)
{
    da_safetensors *st;
    assert_int_equal(da_st_open(path_in(file), &st), DA_OK);
    const char *v = da_st_meta_get(st, key);
    char *copy = v ? strdup(v) : NULL;
    da_st_close(st);
    return copy;
}

/* a checkpoint of a run with small_run's options (name, stopped after 3
 * updates) does not resume a run whose loop options are loop: refused by
 * the fingerprint */
static void assert_resume_refused(const char *name, const da_loop_opts *loop)
{
    da_trainer_config tc;
    da_promptloop_opts o;
    char ckpt[64];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", name);
    small_run(&tc, &o, name);
    tc.stop_at = 3;
    tc.ckpt_path = path_in(ckpt);
    assert_int_equal(da_promptloop_run(&tc, &o, NULL), DA_OK);
    small_run(&tc, &o, name);
    o.loop = *loop;
    tc.ckpt_path = path_in(ckpt);
    o.resume = path_in(ckpt);
    assert_int_not_equal(da_promptloop_run(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "other PromptLoop options"));
}

/* GRPO with keep_meaning: the tiny random refiner never writes the query's
 * meaning, so every rewrite is discarded and each image is sampled from its
 * query; the buffer must still hold the tokens the writer drew (the actions
 * scored), not the prompts the images kept; the weights metadata says so;
 * and a checkpoint of a run without the guard is refused */
static void test_keep_meaning(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_promptloop_opts o;
    small_run(&tc, &o, "pl-keep");
    o.loop.keep_meaning = 1;
    tc.metrics_path = path_in("pl-keep.metrics.jsonl");
    assert_int_equal(da_promptloop_check(&tc, &o), DA_OK);
    if (da_promptloop_run(&tc, &o, NULL) != DA_OK) fail_msg("run: %s", da_last_error());
    char *log = tu_slurp(path_in("pl-keep.metrics.jsonl"), NULL);
    assert_lp_gaps_small(log);
    assert_non_null(strstr(log, "\"meaning\":0,"));   /* nothing written meant the query */
    free(log);
    char *v = meta_value("pl-keep.safetensors", "refine_keep_meaning");
    assert_non_null(v);
    assert_string_equal(v, "true");
    free(v);
    assert_resume_refused("pl-keep-stop", &o.loop);
}

/* A refinement window is part of the run: the weights metadata records it
 * (sample and eval follow it), a run without one records none, a
 * checkpoint of a run without it is refused, and a window that does not
 * fit the sampler is an error by name */
static void test_window(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_promptloop_opts o;
    small_run(&tc, &o, "pl-win");
    o.loop.window_first = 1;
    o.loop.window_end = 3;
    assert_int_equal(da_promptloop_check(&tc, &o), DA_OK);
    if (da_promptloop_run(&tc, &o, NULL) != DA_OK) fail_msg("run: %s", da_last_error());
    da_loop_opts windowed = o.loop;
    char *v = meta_value("pl-win.safetensors", "refine_window");
    assert_non_null(v);
    assert_string_equal(v, "1:3");
    free(v);
    small_run(&tc, &o, "pl-plain");
    if (da_promptloop_run(&tc, &o, NULL) != DA_OK) fail_msg("run: %s", da_last_error());
    assert_null(meta_value("pl-plain.safetensors", "refine_window"));
    int first, end;
    assert_int_equal(da_weights_refiner_window(g_dir, "pl-win", &first, &end), DA_OK);
    assert_true(first == 1 && end == 3);
    assert_resume_refused("pl-win-stop", &windowed);

    small_run(&tc, &o, "pl-win-bad");
    o.loop.window_first = 2;
    o.loop.window_end = 3;   /* one step for 2 refinements */
    assert_int_equal(da_promptloop_check(&tc, &o), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "do not fit the window 2:3"));
}

/* the checkpoint's state buffer NAME (n floats), copied */
static float *ckpt_state(const char *ckpt, const char *name, size_t n)
{
    char key[64];
    snprintf(key, sizeof key, "state.%s", name);
    return tensor_of(ckpt, key, n);
}

/* the sampled tokens of a written row (M ids as floats): up to and
 * including an EOS drawn before the last slot; an EOS forced at the last
 * slot is not an action (written here from that rule, not the trainer's) */
static int sampled_count(const float *out_row)
{
    for (int k = 1; k < DA_MAX_TOKENS - 1; k++)
        if ((int)out_row[k] == DA_TOK_EOS) return k;
    return DA_MAX_TOKENS - 2;
}

/* per token slot of rows written prompts (out, rows x M as floats): the
 * log-prob of the token that followed under refiner NAME, in double from
 * its logits (a plain log-softmax over the writable ids, not the trainer's
 * code), for the tokens[r] sampled slots of each row; the rest are 0 */
static void row_logprobs(const char *name, const float *x0, const float *t, const float *query, const float *prompt,
                         const float *out, const int *tokens, int rows, double *lp)
{
    enum { M = DA_MAX_TOKENS, TO = DA_MAX_TOKENS - 1 };
    da_refiner *m;
    assert_int_equal(da_weights_load_refiner(&m, g_dir, name), DA_OK);
    int *iq = malloc(sizeof(int) * rows * M), *ip = malloc(sizeof(int) * rows * M), *io = malloc(sizeof(int) * rows * TO);
    uint8_t *kq = malloc((size_t)rows * M), *kp = malloc((size_t)rows * M);
    for (int i = 0; i < rows * M; i++) {
        iq[i] = (int)query[i];
        ip[i] = (int)prompt[i];
        kq[i] = iq[i] != DA_TOK_PAD;
        kp[i] = ip[i] != DA_TOK_PAD;
    }
    for (int r = 0; r < rows; r++)
        for (int s = 0; s < TO; s++) io[r * TO + s] = (int)out[r * M + s];
    da_tape tape;
    da_tape_init(&tape, 1 << 24);
    da_tensor *logits = da_refiner_forward(&tape, m, x0, t, iq, kq, ip, kp, io, rows, TO);
    if (!logits) fail_msg("forward: %s", da_last_error());
    int V = logits->shape[2];
    for (int r = 0; r < rows; r++) {
        for (int s = 0; s < TO; s++) {
            lp[r * TO + s] = 0.0;
            if (s >= tokens[r]) continue;
            const float *x = logits->data + ((size_t)r * TO + s) * V;
            double z = 0.0;
            for (int v = 0; v < V; v++)
                if (da_refiner_token_allowed(v)) z += exp((double)x[v]);
            lp[r * TO + s] = (double)x[(int)out[r * M + s + 1]] - log(z);
        }
    }
    da_tape_free(&tape);
    da_refiner_free(m);
    free(iq); free(ip); free(io); free(kq); free(kp);
}

/* One GRPO update goes where the advantages point. A run stopped after its
 * first update leaves the rollout buffer in its checkpoint, and the same
 * run ended there leaves the updated policy. Recomputed here from the
 * buffer: the advantages are those of whole images (equal over an image's
 * K rows) and of groups (zero mean over a query's G images), the buffer's
 * old log-probs are the reference's, and the update raised the ratio
 * surrogate J = sum_r A_r / tokens_r sum_s ratio_rs (no KL here) above its
 * value at the old policy, unclipped and clipped (ratio in [1 - eps, 1 +
 * eps] for A > 0 above, A < 0 below: GRPO's min). Groups of 4, so that the
 * images of a group have different advantages. Tried, each fails it: the
 * advantage's sign flipped (0.037 -> -0.039), each row given the next
 * image's advantage (-0.009) or the other group's (-0.021); so do
 * advantages not shared by an image's rows or not zero-mean in a group. */
static void test_update_follows_advantage(void **state)
{
    (void)state;
    enum { M = DA_MAX_TOKENS, TO = DA_MAX_TOKENS - 1 };
    da_trainer_config tc;
    da_promptloop_opts o;
    small_run(&tc, &o, "pl-dir");
    o.kl_coef = 0.0f;   /* the surrogate alone */
    o.epochs = 1;       /* one update per iteration: its ratios start at exactly 1 */
    o.group = 4;        /* with 2, a group's advantages are +-1 in every group alike */
    da_promptloop_trainer_defaults(&tc, &o);
    tc.progress = 0;
    tc.seed = 9;
    tc.lr = tc.min_lr = 1e-3f;
    tc.total_steps = 1;
    if (da_promptloop_run(&tc, &o, NULL) != DA_OK) fail_msg("run: %s", da_last_error());
    tc.total_steps = 2;
    tc.stop_at = 1;
    tc.ckpt_path = path_in("pl-dir.ckpt");
    o.name = "pl-dir-stop";
    if (da_promptloop_run(&tc, &o, NULL) != DA_OK) fail_msg("stopped run: %s", da_last_error());

    int K = o.loop.n_refine, G = o.group, rows = o.queries * G * K;
    da_refiner_config rc = da_refiner_config_default();   /* setup's refiner keeps the default latent */
    size_t latent_n = (size_t)rc.latent_channels * rc.latent_size * rc.latent_size;
    float *x0 = ckpt_state("pl-dir.ckpt", "x0", (size_t)rows * latent_n);
    float *t = ckpt_state("pl-dir.ckpt", "t", (size_t)rows);
    float *query = ckpt_state("pl-dir.ckpt", "query", (size_t)rows * M);
    float *prompt = ckpt_state("pl-dir.ckpt", "prompt", (size_t)rows * M);
    float *out = ckpt_state("pl-dir.ckpt", "out", (size_t)rows * M);
    float *lp_old = ckpt_state("pl-dir.ckpt", "lp_old", (size_t)rows * TO);
    float *adv = ckpt_state("pl-dir.ckpt", "adv", (size_t)rows);

    /* the advantages: one per image, zero mean over each group, not all 0 */
    double spread = 0.0;
    for (int q = 0; q < o.queries; q++) {
        double sum = 0.0;
        for (int g = 0; g < G; g++) {
            int r0 = (q * G + g) * K;
            for (int k = 1; k < K; k++) assert_true(adv[r0 + k] == adv[r0]);
            sum += adv[r0];
            spread += fabs(adv[r0]);
        }
        assert_true(fabs(sum) < 1e-4);
    }
    assert_true(spread > 0.5);   /* the reward differed within a group: there was something to follow */

    double *before = malloc(sizeof(double) * rows * TO), *after = malloc(sizeof(double) * rows * TO);
    int *tokens = calloc((size_t)rows, sizeof(int));
    for (int r = 0; r < rows; r++) tokens[r] = sampled_count(out + (size_t)r * M);
    row_logprobs("refiner-ref", x0, t, query, prompt, out, tokens, rows, before);
    row_logprobs("pl-dir", x0, t, query, prompt, out, tokens, rows, after);
    /* at the old policy every ratio is 1: J0 = sum_r A_r */
    double J0 = 0.0, J1 = 0.0, Jc = 0.0, moved = 0.0, eps = o.clip_eps;
    for (int r = 0; r < rows; r++) {
        double j1 = 0.0, jc = 0.0;
        for (int s = 0; s < tokens[r]; s++) {
            /* the buffer's old log-probs are the rollout policy's (the reference) */
            if (fabs(before[r * TO + s] - lp_old[r * TO + s]) > 1e-4)
                fail_msg("row %d slot %d: old log-prob %.6f in the buffer, %.6f recomputed", r, s,
                         (double)lp_old[r * TO + s], before[r * TO + s]);
            double d = after[r * TO + s] - before[r * TO + s], ratio = exp(d);
            j1 += ratio;
            jc += adv[r] > 0 ? fmin(ratio, 1.0 + eps) : fmax(ratio, 1.0 - eps);   /* min(ratio A, clip A) / A */
            moved = fmax(moved, fabs(d));
        }
        J0 += adv[r];
        J1 += adv[r] * j1 / tokens[r];
        Jc += adv[r] * jc / tokens[r];
    }
    printf("[ promptloop ] one update: surrogate %.6g -> %.6g (clipped %.6g), largest log-prob change %.3g\n", J0 / rows,
           J1 / rows, Jc / rows, moved);
    assert_true(moved > 1e-4);   /* the policy moved */
    if (!(J1 > J0 && Jc > J0))
        fail_msg("the update lowered the surrogate: %.8g -> %.8g (clipped %.8g)", J0 / rows, J1 / rows, Jc / rows);
    free(x0); free(t); free(query); free(prompt); free(out); free(lp_old); free(adv);
    free(before); free(after); free(tokens);
}

static void test_bad_options(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_promptloop_opts o;
    small_run(&tc, &o, "pl-bad");
    o.group = 1;
    assert_int_equal(da_promptloop_check(&tc, &o), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "group"));
    small_run(&tc, &o, "pl-bad");
    o.minibatches = 3;   /* does not divide 2 queries */
    da_promptloop_trainer_defaults(&tc, &o);
    assert_int_equal(da_promptloop_check(&tc, &o), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "minibatches"));
    small_run(&tc, &o, "pl-bad");
    o.loop.temperature = 0.0f;
    assert_int_equal(da_promptloop_check(&tc, &o), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "temperature"));
    small_run(&tc, &o, "pl-bad");
    o.loop.n_refine = 5;   /* 4 sampler steps */
    assert_int_equal(da_promptloop_check(&tc, &o), DA_ERR_INVALID);
    small_run(&tc, &o, "pl-bad");
    tc.total_steps = 3;   /* not whole iterations of 2 updates */
    assert_int_equal(da_promptloop_check(&tc, &o), DA_ERR_INVALID);
    small_run(&tc, &o, "pl-bad");
    o.init = "no-such-refiner";
    assert_int_not_equal(da_promptloop_run(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "no-such-refiner"));
    small_run(&tc, &o, "pl-bad");
    o.reward = "bogus";
    assert_int_not_equal(da_promptloop_run(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "bogus"));
    /* an existing model is never replaced silently */
    small_run(&tc, &o, "pl-a");
    o.force = 0;
    assert_int_equal(da_promptloop_run(&tc, &o, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "--force"));
}

/* Training queries are never evaluation prompts: the excluded set holds
 * the 200 held-in and 200 held-out evaluation prompts' meanings, each of
 * them is excluded, and 3000 drawn queries of both splits mean none of
 * them (about a sixth of raw draws would: the redraws are needed). */
static void test_queries_exclude_eval_prompts(void **state)
{
    (void)state;
    dq_excluded x;
    assert_int_equal(dq_excluded_init(&x), DA_OK);
    assert_int_equal(x.n, 2 * DA_REPORT_SPLIT_PROMPTS);
    char *text = malloc((size_t)DA_REPORT_SPLIT_PROMPTS * DA_CAPTION_MAX);
    assert_int_equal(da_eval_prompts(DA_EVAL_PROMPT_SEED, DA_SPLIT_HELDOUT, DA_REPORT_SPLIT_PROMPTS, text, NULL), DA_OK);
    for (int i = 0; i < DA_REPORT_SPLIT_PROMPTS; i++) {
        da_scene spec;
        assert_int_equal(da_parse_prompt(text + (size_t)i * DA_CAPTION_MAX, &spec), DA_OK);
        assert_true(dq_is_excluded(&x, &spec));
    }
    free(text);
    da_rng rng;
    da_rng_seed(&rng, 77);
    int raw_hits = 0;
    for (int i = 0; i < 3000; i++) {
        char cap[DA_CAPTION_MAX];
        da_scene spec, scene;
        assert_int_equal(dq_draw(&rng, (da_split)(i % 2), &x, cap, &spec), DA_OK);
        assert_false(dq_is_excluded(&x, &spec));
        assert_int_equal(da_world_example(&rng, (da_split)(i % 2), &scene, NULL, cap, sizeof cap), DA_OK);
        assert_int_equal(da_parse_prompt(cap, &spec), DA_OK);
        raw_hits += dq_is_excluded(&x, &spec);
    }
    printf("[ promptloop ] raw draws meaning an evaluation prompt: %d of 3000\n", raw_hits);
    assert_true(raw_hits > 0);   /* otherwise the exclusion would test nothing */
    dq_excluded_free(&x);
}

/* --query-split: train leaves the generator alone and never draws a
 * held-out composition; all draws both splits by a fair coin (held-out
 * colour-shape pairs and layouts appear), still never an evaluation prompt */
static void test_query_split(void **state)
{
    (void)state;
    dq_excluded x;
    assert_int_equal(dq_excluded_init(&x), DA_OK);
    for (int all = 0; all < 2; all++) {
        da_rng rng, before;
        da_rng_seed(&rng, 5);
        int heldout = 0, n = 400;
        for (int i = 0; i < n; i++) {
            before = rng;
            da_split split = dq_split(&rng, all);
            if (!all) assert_memory_equal(&before, &rng, sizeof rng);
            char cap[DA_CAPTION_MAX];
            da_scene spec;
            assert_int_equal(dq_draw(&rng, split, &x, cap, &spec), DA_OK);
            assert_false(dq_is_excluded(&x, &spec));
            heldout += da_scene_heldout(&spec) != 0;
        }
        printf("[ promptloop ] query split %s: %d of %d queries held out\n", all ? "all" : "train", heldout, n);
        /* all: a coin per query, and a held-out split scene always holds a
         * held-out pair or layout; 400 fair coins land in 150..250 with
         * probability 1 - 6e-7 */
        if (all ? heldout < 150 || heldout > 250 : heldout != 0)
            fail_msg("query split %d: %d of %d queries held out", all, heldout, n);
    }
    dq_excluded_free(&x);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queries_exclude_eval_prompts),
        cmocka_unit_test(test_query_split),
        cmocka_unit_test(test_run_and_metrics),
        cmocka_unit_test(test_resume_and_threads),
        cmocka_unit_test(test_keep_meaning),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_update_follows_advantage),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
