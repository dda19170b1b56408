/* RL on the UNet's weights (src/train/rl_weights.c, rl_losses.c): the PPO
 * term against a hand computation in both clip branches; DDPO's per-prompt
 * tracker against known answers (history, batch fallback, wrap, eviction);
 * the KL term and the whole per-step loss against finite differences; the
 * trained-step log-probability of a sampled step against its closed form
 * (the sampler's own closed form is in test_samplers.c); runs of the three
 * methods over tiny random models: metrics, first ratio exactly 1,
 * bit-identical resume between two updates of one rollout batch, 1 vs 2
 * threads; bad options refused by name. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/rl_weights.h"

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
    snprintf(g_dir, sizeof g_dir, "/tmp/dalign_rlw_XXXXXX");
    return !mkdtemp(g_dir) || tu_tiny_weights(g_dir) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* ---- the PPO term ------------------------------------------------------------- */

static void ppo_case(float ratio, float adv, float want_loss, float want_grad, int want_clipped)
{
    float dl, r;
    int clipped;
    float l = rlw_ppo_term(da_logf(ratio), 0.0f, adv, 0.2f, &dl, &clipped, &r);
    if (fabsf(l - want_loss) > 1e-5f || fabsf(dl - want_grad) > 1e-5f || clipped != want_clipped)
        fail_msg("ratio %g A %g: loss %g (want %g), dL/dlp %g (want %g), clipped %d", (double)ratio, (double)adv,
                 (double)l, (double)want_loss, (double)dl, (double)want_grad, clipped);
}

/* L = max(-A r, -A clip(r, 0.8, 1.2)), dL/dlp = -A r on the unclipped branch */
static void test_ppo_term(void **state)
{
    (void)state;
    ppo_case(1.5f, 2.0f, -2.4f, 0.0f, 1);    /* A > 0, r too high: clipped, no gradient */
    ppo_case(1.5f, -2.0f, 3.0f, 3.0f, 1);    /* A < 0, r high: the unclipped (worse) branch */
    ppo_case(0.5f, 2.0f, -1.0f, -1.0f, 1);   /* A > 0, r low: unclipped */
    ppo_case(0.5f, -2.0f, 1.6f, 0.0f, 1);    /* A < 0, r too low: clipped */
    ppo_case(1.1f, 2.0f, -2.2f, -2.2f, 0);   /* inside the band: plain -A r */
    ppo_case(1.0f, 0.7f, -0.7f, -0.7f, 0);
}

/* ---- the tracker -------------------------------------------------------------- */

static void expect_adv(const float *adv, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (fabsf(adv[i] - want[i]) > 1e-5f) fail_msg("adv[%d] = %.7g, want %.7g", i, (double)adv[i], (double)want[i]);
}

static void test_tracker(void **state)
{
    (void)state;
    float data[4 * (5 + 3)] = {0}, adv[3];
    rlw_tracker t = {.slots = 4, .cap = 3, .min_count = 2, .data = data};
    assert_int_equal(rlw_tracker_floats(4, 3), 32);
    /* a has 2 rewards: its own stats (mean 2, std 1); b has 1: the batch's
     * (mean 3, std sqrt(8/3)) */
    const char *p1[3] = {"a", "a", "b"};
    float r1[3] = {1, 3, 5};
    rlw_tracker_update(&t, p1, r1, 3, 1e-6f, 0, adv);
    float w1[3] = {-1.0f, 1.0f, 2.0f / sqrtf(8.0f / 3.0f)};
    expect_adv(adv, w1, 3);
    /* a: {1, 3, 7}, b: {5, 1, 3} */
    const char *p2[3] = {"a", "b", "b"};
    float r2[3] = {7, 1, 3};
    rlw_tracker_update(&t, p2, r2, 3, 1e-6f, 1, adv);
    float sa = sqrtf(56.0f / 9.0f), sb = sqrtf(8.0f / 3.0f);
    float w2[3] = {(7.0f - 11.0f / 3.0f) / sa, -2.0f / sb, 0.0f};
    expect_adv(adv, w2, 3);
    /* the history keeps the last 3: a = {9, 3, 7} */
    const char *p3[1] = {"a"};
    float r3[1] = {9};
    rlw_tracker_update(&t, p3, r3, 1, 1e-6f, 2, adv);
    float w3[1] = {(9.0f - 19.0f / 3.0f) / sa};
    expect_adv(adv, w3, 1);
    /* c, d fill the table; e evicts b (last used at stamp 1); b comes back
     * with no history: the batch's stats (mean 2.5, std 0.5) */
    const char *p4[3] = {"c", "d", "e"};
    float r4[3] = {0, 0, 0};
    rlw_tracker_update(&t, p4, r4, 3, 1e-6f, 3, adv);
    const char *p5[2] = {"b", "a"};
    float r5[2] = {3, 2};
    rlw_tracker_update(&t, p5, r5, 2, 1e-6f, 4, adv);
    assert_true(fabsf(adv[0] - 1.0f) < 1e-5f);   /* (3 - 2.5) / 0.5 */
}

/* ---- the KL and the per-step loss ------------------------------------------- */

#define NL 16

static void ddim_eta1(da_schedule *s, da_ddim *d, int steps)
{
    assert_int_equal(da_schedule_init(s, DA_BETA_LINEAR, 1000, 1e-4, 0.02), DA_OK);
    da_ddim_config c = da_ddim_config_default();
    c.eta = 1.0f;
    c.clip_sample = 0;
    assert_int_equal(da_ddim_init(d, s, &c, steps), DA_OK);
}

/* rows at timesteps 900, 500 and 100 (a 10-step sampler) */
static void make_rows(rlw_rows *a, const da_ddim *d, const int *t, float *x, float *xp, float *lp_old, float *adv,
                      float *mu_ref, float *mu, float *zeros, float *lp, float kl)
{
    *a = (rlw_rows){.R = 3, .n = NL, .ddim = d, .t = t, .x = x, .x_prev = xp, .lp_old = lp_old, .adv = adv,
                    .mu_ref = mu_ref, .mu = mu, .zeros = zeros, .clip_eps = 0.5f, .kl_coef = kl, .weight = 1.0f / 3,
                    .lp = lp};
}

static void test_kl_and_loss_finite_differences(void **state)
{
    (void)state;
    da_schedule s;
    da_ddim d;
    ddim_eta1(&s, &d, 10);
    int t[3] = {900, 500, 100};
    float x[3 * NL], xp[3 * NL], eps[3 * NL], mu_ref[3 * NL], mu[NL], zeros[NL] = {0}, g[3 * NL];
    tu_fill(x, 3 * NL, 1, -1.0f, 1.0f);
    tu_fill(xp, 3 * NL, 2, -1.0f, 1.0f);
    tu_fill(eps, 3 * NL, 3, -1.0f, 1.0f);
    tu_fill(mu_ref, 3 * NL, 4, -1.0f, 1.0f);

    /* the KL alone, row 1: quadratic in eps, so central differences are
     * exact up to rounding (h = 1e-2; float KL values ~1 -> 1e-3 relative) */
    float c_e, sigma;
    assert_int_equal(rlw_ddim_coef(&d, 500, &c_e, &sigma), DA_OK);
    assert_true(sigma > 0.0f && c_e != 0.0f);
    float gk[NL] = {0};
    assert_int_equal(rlw_ddim_mean(&d, 500, eps + NL, x + NL, zeros, mu, NL), DA_OK);
    rlw_kl_term(gk, mu, mu_ref + NL, c_e, sigma, NL, 1.0f);
    for (int i = 0; i < NL; i++) {
        float e2[NL], h = 1e-2f;
        memcpy(e2, eps + NL, sizeof e2);
        e2[i] += h;
        rlw_ddim_mean(&d, 500, e2, x + NL, zeros, mu, NL);
        double up = rlw_kl_term(NULL, mu, mu_ref + NL, c_e, sigma, NL, 1.0f);
        e2[i] -= 2 * h;
        rlw_ddim_mean(&d, 500, e2, x + NL, zeros, mu, NL);
        double dn = rlw_kl_term(NULL, mu, mu_ref + NL, c_e, sigma, NL, 1.0f);
        double fd = (up - dn) / (2 * h);
        if (fabs(fd - gk[i]) > 1e-3 * fabs(fd) + 1e-4) fail_msg("dKL/deps[%d] = %g, finite difference %g", i, (double)gk[i], fd);
    }

    /* the whole loss (surrogate + 0.04 KL) of three rows at three timesteps;
     * lp_old = lp at eps and a wide clip, so no kink is near */
    float lp_old[3], adv[3] = {1.5f, -0.5f, 2.0f}, lp[3], loss;
    rlw_rows a;
    make_rows(&a, &d, t, x, xp, lp_old, adv, mu_ref, mu, zeros, lp, 0.04f);
    for (int r = 0; r < 3; r++) da_ddim_logprob_forward(&lp_old[r], eps + r * NL, xp + r * NL, x + r * NL, &d, t[r], 1, NL);
    assert_int_equal(rlw_rows_loss(&a, eps, g, &loss), DA_OK);
    assert_int_equal(a.clipped, 0);
    assert_true(fabs(a.ratio_sum - 3.0) < 1e-6);
    for (int i = 0; i < 3 * NL; i++) {
        float e2[3 * NL], up, dn, h = 1e-3f;
        memcpy(e2, eps, sizeof e2);
        e2[i] += h;
        rlw_rows_loss(&a, e2, NULL, &up);
        e2[i] -= 2 * h;
        rlw_rows_loss(&a, e2, NULL, &dn);
        double fd = ((double)up - dn) / (2 * h);
        /* float losses ~10 differenced over 2e-3: ~1e-2 absolute noise */
        if (fabs(fd - g[i]) > 2e-2 * fabs(fd) + 2e-2) fail_msg("dL/deps[%d] = %g, finite difference %g", i, (double)g[i], fd);
    }
    da_ddim_free(&d);
    da_schedule_free(&s);
}

/* a step sampled as mean + std z: the rows' log-prob is mean(-z^2/2) -
 * log std - log sqrt(2 pi), each row at its own timestep */
static void test_rows_logprob_closed_form(void **state)
{
    (void)state;
    da_schedule s;
    da_ddim d;
    ddim_eta1(&s, &d, 10);
    int t[3] = {900, 500, 100};
    float x[3 * NL], xp[3 * NL], eps[3 * NL], z[3 * NL], mu[NL], zeros[NL] = {0}, lp[3], lp_old[3] = {0},
          adv[3] = {1, 1, 1}, loss;
    tu_fill(x, 3 * NL, 5, -1.0f, 1.0f);
    tu_fill(eps, 3 * NL, 6, -1.0f, 1.0f);
    da_rng rng;
    da_rng_seed(&rng, 7);
    da_randn(&rng, z, 3 * NL);
    for (int r = 0; r < 3; r++)
        assert_int_equal(da_ddim_step(&d, xp + r * NL, NULL, eps + r * NL, t[r], x + r * NL, z + r * NL, NL), DA_OK);
    rlw_rows a;
    make_rows(&a, &d, t, x, xp, lp_old, adv, NULL, mu, zeros, lp, 0.0f);
    assert_int_equal(rlw_rows_loss(&a, eps, NULL, &loss), DA_OK);
    for (int r = 0; r < 3; r++) {
        float c_e, sigma;
        rlw_ddim_coef(&d, t[r], &c_e, &sigma);
        double want = -log((double)sigma) - 0.5 * log(2 * M_PI);
        for (int i = 0; i < NL; i++) want += -(double)z[r * NL + i] * z[r * NL + i] / 2 / NL;
        /* x_prev - mean = std z up to one float rounding of x_prev (~1e-7
         * of |x_prev| ~ 1), divided by std ~0.1..0.8: <= 1e-5 in z */
        if (fabs(lp[r] - want) > 1e-4) fail_msg("row %d (t %d): logp %.7g, closed form %.7g", r, t[r], (double)lp[r], want);
    }
    da_ddim_free(&d);
    da_schedule_free(&s);
}

/* ---- runs ------------------------------------------------------------------------ */

/* 2 prompts x 2 rollouts over 4 sampler steps, 2 epochs x 1 minibatch:
 * 2 updates per iteration, 2 iterations */
static void small_run(da_trainer_config *tc, da_rlw_opts *o, da_rlw_method m, const char *name)
{
    *o = da_rlw_defaults(m);
    o->weights_dir = g_dir;
    o->name = name;
    o->prompts = 2;
    o->group = 2;
    o->sample.steps = 4;
    o->timestep_frac = 1.0f;
    o->epochs = 2;
    o->minibatches = 1;
    o->force = 1;
    o->tracker_min = 3;   /* DDPO: iteration 2 uses the history of a repeated prompt */
    o->prompt_pool = m == DA_RLW_DDPO ? 2 : 0;
    if (m == DA_RLW_GRPO) o->shared_noise = 1;
    /* random tiny models draw no shapes: faithfulness would be 0 for every
     * rollout; colourfulness varies from image to image */
    o->reward = "colorful";
    da_rlw_trainer_defaults(tc, o);
    tc->total_steps = 4;
    tc->lr = tc->min_lr = 1e-3f;   /* large enough that a lost buffer would show */
    tc->progress = 0;
    tc->seed = 9;
}

static float *weights_of(const char *name, size_t *n)
{
    char p[256];
    snprintf(p, sizeof p, "%s.safetensors", name);
    da_safetensors *st;
    if (da_st_open(path_in(p), &st) != DA_OK) fail_msg("%s: %s", p, da_last_error());
    const da_st_tensor *t = da_st_find(st, "conv_out.weight");
    if (!t) fail_msg("%s has no conv_out.weight", p);
    float *w = malloc(t->numel * sizeof(float));
    da_st_to_f32(st, t, w);
    *n = t->numel;
    da_st_close(st);
    return w;
}

static void run_and_check(da_rlw_method m, const char *name, const char *const *keys, int n_keys)
{
    da_trainer_config tc;
    da_rlw_opts o;
    small_run(&tc, &o, m, name);
    char metrics[128];
    snprintf(metrics, sizeof metrics, "%s.metrics.jsonl", name);
    tc.metrics_path = path_in(metrics);
    da_rlw_result r;
    if (da_rlw_run(&tc, &o, &r) != DA_OK) fail_msg("%s: %s", name, da_last_error());
    assert_int_equal(r.steps, 4);
    assert_int_equal(r.exit_code, 0);
    da_pipeline *p;
    if (da_weights_load_pipeline(&p, g_dir, name) != DA_OK) fail_msg("reload %s: %s", name, da_last_error());
    da_pipeline_free(p);
    char *log = tu_slurp(path_in(metrics), NULL);
    for (int i = 0; i < n_keys; i++)
        if (!strstr(log, keys[i])) fail_msg("%s metrics lack %s:\n%s", name, keys[i], log);
    if (m != DA_RLW_RAFT) {
        /* step 1 is the first update of iteration 1: every ratio exactly 1 */
        const char *first = strstr(log, "\"step\":1,");
        assert_non_null(first);
        const char *ratio = strstr(first, "\"ratio\":");
        assert_non_null(ratio);
        if (strncmp(ratio, "\"ratio\":1,", 10) && strncmp(ratio, "\"ratio\":1}", 10)) fail_msg("first ratio: %.40s", ratio);
        assert_non_null(strstr(first, "\"clip_frac\":0,"));
    }
    assert_null(strstr(log, "\"zero_std\":1,"));
    size_t n, n0;
    float *w = weights_of(name, &n), *w0 = weights_of("unet", &n0);
    assert_int_equal(n, n0);
    assert_true(memcmp(w, w0, n * sizeof(float)) != 0);   /* the weights moved */
    free(w);
    free(w0);
    free(log);
}

static void test_runs_and_metrics(void **state)
{
    (void)state;
    const char *pg[] = {"\"reward\":", "\"reward_std\":", "\"zero_std\":", "\"clip_frac\":", "\"approx_kl\":",
                        "\"ratio\":", "\"grad_norm\":"};
    run_and_check(DA_RLW_DDPO, "ddpo-a", pg, 7);
    const char *grpo[] = {"\"kl_ref\":", "\"zero_std\":", "\"clip_frac\":"};
    run_and_check(DA_RLW_GRPO, "grpo-a", grpo, 3);
    const char *raft[] = {"\"reward\":", "\"best_reward\":", "\"grad_norm\":"};
    run_and_check(DA_RLW_RAFT, "raft-a", raft, 3);
}

/* stopped after update 3 (the middle of iteration 2), resumed: the same
 * weights as the uninterrupted run; and 2 threads the same as 1 */
static void resume_and_threads(da_rlw_method m, const char *tag)
{
    char full[64], two[64], stop[64], ckpt[80];
    snprintf(full, sizeof full, "%s-full", tag);
    snprintf(two, sizeof two, "%s-2t", tag);
    snprintf(stop, sizeof stop, "%s-stop", tag);
    snprintf(ckpt, sizeof ckpt, "%s-stop.ckpt", tag);
    da_trainer_config tc;
    da_rlw_opts o;
    int saved = da_get_threads();
    da_set_threads(1);
    small_run(&tc, &o, m, full);
    assert_int_equal(da_rlw_run(&tc, &o, NULL), DA_OK);
    da_set_threads(2);
    small_run(&tc, &o, m, two);
    assert_int_equal(da_rlw_run(&tc, &o, NULL), DA_OK);
    da_set_threads(saved);

    small_run(&tc, &o, m, stop);
    tc.stop_at = 3;
    tc.ckpt_path = path_in(ckpt);
    da_rlw_result r;
    assert_int_equal(da_rlw_run(&tc, &o, &r), DA_OK);
    assert_int_equal(r.steps, 3);
    small_run(&tc, &o, m, stop);
    tc.ckpt_path = path_in(ckpt);
    o.resume = path_in(ckpt);
    if (da_rlw_run(&tc, &o, &r) != DA_OK) fail_msg("resume: %s", da_last_error());
    assert_int_equal(r.steps, 4);

    size_t n;
    float *a = weights_of(full, &n), *b = weights_of(two, &n), *c = weights_of(stop, &n);
    tu_assert_bits("2 threads vs 1", b, a, n);
    tu_assert_bits("resumed vs uninterrupted", c, a, n);
    free(a);
    free(b);
    free(c);

    /* a resume with other options is refused, naming why */
    small_run(&tc, &o, m, stop);
    o.clip_eps = 0.2f;
    o.resume = path_in(ckpt);
    assert_int_not_equal(da_rlw_run(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "cannot resume"));
}

static void test_resume_and_threads(void **state)
{
    (void)state;
    resume_and_threads(DA_RLW_GRPO, "grpo");   /* buffer with the base's means */
    resume_and_threads(DA_RLW_DDPO, "ddpo");   /* the tracker */
    resume_and_threads(DA_RLW_RAFT, "raft");
}

static void expect_refused(const da_trainer_config *tc, const da_rlw_opts *o, const char *word)
{
    assert_int_equal(da_rlw_check(tc, o), DA_ERR_INVALID);
    if (!strstr(da_last_error(), word)) fail_msg("'%s' does not name %s", da_last_error(), word);
}

static void test_bad_options(void **state)
{
    (void)state;
    da_trainer_config tc;
    da_rlw_opts o;
    small_run(&tc, &o, DA_RLW_DDPO, "bad");
    o.sample.eta = 0.0f;
    expect_refused(&tc, &o, "eta");
    small_run(&tc, &o, DA_RLW_GRPO, "bad");
    o.group = 1;
    expect_refused(&tc, &o, "group");
    small_run(&tc, &o, DA_RLW_GRPO, "bad");
    o.minibatches = 3;
    da_rlw_trainer_defaults(&tc, &o);
    expect_refused(&tc, &o, "minibatches");
    small_run(&tc, &o, DA_RLW_DDPO, "bad");
    o.timestep_frac = 0.0f;
    expect_refused(&tc, &o, "timestep fraction");
    small_run(&tc, &o, DA_RLW_DDPO, "bad");
    o.kl_coef = 0.1f;
    expect_refused(&tc, &o, "GRPO");
    small_run(&tc, &o, DA_RLW_DDPO, "bad");
    o.clip_eps = 1.0f;
    expect_refused(&tc, &o, "clip");
    small_run(&tc, &o, DA_RLW_RAFT, "bad");
    tc.total_steps = 3;
    expect_refused(&tc, &o, "steps");
    small_run(&tc, &o, DA_RLW_DDPO, "bad");
    o.name = NULL;
    expect_refused(&tc, &o, "--name");
    da_rlw_method m;
    assert_int_equal(da_rlw_method_parse("ppo", &m), DA_ERR_INVALID);
    assert_int_equal(da_rlw_method_parse("grpo", &m), DA_OK);
    assert_int_equal(m, DA_RLW_GRPO);
    small_run(&tc, &o, DA_RLW_GRPO, "bad");
    o.init = "no-such-unet";
    assert_int_not_equal(da_rlw_run(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "no-such-unet"));
    small_run(&tc, &o, DA_RLW_GRPO, "bad");
    o.reward = "bogus";
    assert_int_not_equal(da_rlw_run(&tc, &o, NULL), DA_OK);
    assert_non_null(strstr(da_last_error(), "bogus"));
    /* an existing model is never replaced silently */
    small_run(&tc, &o, DA_RLW_DDPO, "ddpo-a");
    o.force = 0;
    assert_int_equal(da_rlw_run(&tc, &o, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "--force"));
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ppo_term),
        cmocka_unit_test(test_tracker),
        cmocka_unit_test(test_kl_and_loss_finite_differences),
        cmocka_unit_test(test_rows_logprob_closed_form),
        cmocka_unit_test(test_runs_and_metrics),
        cmocka_unit_test(test_resume_and_threads),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
