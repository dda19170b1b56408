/* Noise schedules and samplers (src/diffusion): bit-exact schedules against
 * torch, the diffusers scheduler test-suite reproduced as a peer suite,
 * sampling loops against a torch re-implementation, the DDIM step
 * log-probability against its closed form, and the invariants. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS 768   /* the diffusers fixtures are (4, 3, 8, 8) */

/* ---- the diffusers test fixtures (tests/schedulers/test_schedulers.py) ----
 * dummy_sample_deter: arange(768).reshape(3, 8, 8, 4) / 768, permuted to
 * (4, 3, 8, 8), so x[b, c, h, w] = k / 768 with k = ((c*8 + h)*8 + w)*4 + b;
 * dummy_noise_deter: the same from arange(768).flip(-1), i.e. (767 - k) / 768. */
static void fixture(float *x, int flip)
{
    for (int b = 0; b < 4; b++)
        for (int c = 0; c < 3; c++)
            for (int h = 0; h < 8; h++)
                for (int w = 0; w < 8; w++) {
                    int k = ((c * 8 + h) * 8 + w) * 4 + b;
                    x[((b * 3 + c) * 8 + h) * 8 + w] = (float)(flip ? 767 - k : k) / 768.0f;
                }
}

/* dummy_model(x, t) = x * t / (t + 1), in float32 as torch evaluates it */
static void dummy_model(float *out, const float *x, float t, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = x[i] * t / (t + 1.0f);
}

/* result_sum = torch.sum(torch.abs(sample)), result_mean = its mean */
static void abs_sum_mean(const float *x, size_t n, double *sum, double *mean)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)x[i]);
    *sum = s;
    *mean = s / (double)n;
}

/* diffusers asserts |sum - want| < 1e-2 and |mean - want| < 1e-3: their
 * reference numbers are printed with 4-6 digits, so these are the tolerances
 * the peer values support. */
static void check_peer(const char *what, const float *x, double want_sum, double want_mean)
{
    double sum, mean;
    abs_sum_mean(x, NS, &sum, &mean);
    if (!(fabs(sum - want_sum) < 1e-2 && fabs(mean - want_mean) < 1e-3))
        fail_msg("%s: sum %.6f mean %.6f, diffusers expects %.6f / %.6f", what, sum, mean, want_sum, want_mean);
}

/* ---- schedules: the table of tests/oracle/schedule.py ---- */
typedef struct sched_cfg {
    const char *name;
    da_beta_schedule kind;
    int T;
    double b0, b1;
} sched_cfg;

static const sched_cfg SCHEDULES[] = {
    {"linear", DA_BETA_LINEAR, 1000, 0.0001, 0.02},
    {"linear_b01", DA_BETA_LINEAR, 1000, 0.01, 0.02},
    {"linear_T1100", DA_BETA_LINEAR, 1100, 0.0001, 0.02},
    {"scaled_linear", DA_BETA_SCALED_LINEAR, 1000, 0.00085, 0.012},
    {"scaled_linear_T77", DA_BETA_SCALED_LINEAR, 77, 0.0001, 0.02},
};

static void sched_make(da_schedule *s, da_beta_schedule kind, int T, double b0, double b1)
{
    assert_int_equal(da_schedule_init(s, kind, T, b0, b1), DA_OK);
}

static void test_linspace_bits(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("schedule");
    int k = 0;
    for (;; k++) {
        char name[64], args[80];
        snprintf(name, sizeof name, "linspace.%d", k);
        snprintf(args, sizeof args, "%s.args", name);
        if (!da_st_find(st, name)) break;
        float *a = tu_ref(st, args, 3);
        int n = (int)a[2];
        float *want = tu_ref(st, name, (size_t)n);
        float *got = malloc((size_t)n * sizeof(float));
        da_linspace_f32(got, a[0], a[1], n);
        tu_assert_bits(name, got, want, (size_t)n);
        free(got);
        free(want);
        free(a);
    }
    assert_true(k >= 20);   /* the file really held the cases */
    da_st_close(st);
}

static void test_schedule_bits(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("schedule");
    for (size_t c = 0; c < sizeof SCHEDULES / sizeof SCHEDULES[0]; c++) {
        const sched_cfg *g = &SCHEDULES[c];
        da_schedule s;
        sched_make(&s, g->kind, g->T, g->b0, g->b1);
        const char *fields[3] = {"betas", "alphas", "alphas_cumprod"};
        const float *mine[3] = {s.betas, s.alphas, s.alphas_cumprod};
        for (int f = 0; f < 3; f++) {
            char name[96];
            snprintf(name, sizeof name, "sched.%s.%s", g->name, fields[f]);
            float *want = tu_ref(st, name, (size_t)g->T);
            tu_assert_bits(name, mine[f], want, (size_t)g->T);
            free(want);
        }
        da_schedule_free(&s);
    }
    da_st_close(st);
}

static void expect_timesteps(const char *what, int n, int T, da_spacing sp, int off, const int *want)
{
    int got[64];
    assert_int_equal(da_timesteps(got, n, T, sp, off), DA_OK);
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("%s: timesteps[%d] = %d, want %d", what, i, got[i], want[i]);
}

static void test_timesteps(void **state)
{
    (void)state;
    /* diffusers test_scheduler_ddim.py test_steps_offset: [801, 601, 401, 201, 1] */
    expect_timesteps("leading+1", 5, 1000, DA_SPACING_LEADING, 1, (const int[]){801, 601, 401, 201, 1});
    expect_timesteps("leading", 10, 1000, DA_SPACING_LEADING, 0,
                     (const int[]){900, 800, 700, 600, 500, 400, 300, 200, 100, 0});
    /* numpy: np.round(np.arange(1000, 0, -1000/7)) - 1 and np.linspace(0, 999, 7).round()[::-1] */
    expect_timesteps("trailing", 7, 1000, DA_SPACING_TRAILING, 0, (const int[]){999, 856, 713, 570, 428, 285, 142});
    expect_timesteps("trailing3", 3, 1000, DA_SPACING_TRAILING, 0, (const int[]){999, 666, 332});
    expect_timesteps("linspace", 7, 1000, DA_SPACING_LINSPACE, 0, (const int[]){999, 832, 666, 500, 333, 166, 0});
    /* DDPM's full chain is every timestep */
    int all[1000];
    assert_int_equal(da_timesteps(all, 1000, 1000, DA_SPACING_LEADING, 0), DA_OK);
    for (int i = 0; i < 1000; i++) assert_int_equal(all[i], 999 - i);
}

static void expect_fail(da_status got, da_status want, const char *needle)
{
    assert_int_equal(got, want);
    if (needle && !strstr(da_last_error(), needle))
        fail_msg("error message '%s' does not mention '%s'", da_last_error(), needle);
}

static void test_bad_config(void **state)
{
    (void)state;
    da_beta_schedule k;
    da_prediction p;
    da_spacing sp;
    da_variance_type vt;
    expect_fail(da_beta_schedule_parse("cosine", &k), DA_ERR_INVALID, "cosine");
    expect_fail(da_beta_schedule_parse(NULL, &k), DA_ERR_INVALID, NULL);
    expect_fail(da_prediction_parse("x0", &p), DA_ERR_INVALID, "x0");
    expect_fail(da_spacing_parse("even", &sp), DA_ERR_INVALID, "even");
    expect_fail(da_variance_type_parse("learned", &vt), DA_ERR_INVALID, "learned");
    assert_int_equal(da_beta_schedule_parse("scaled_linear", &k), DA_OK);
    assert_int_equal(k, DA_BETA_SCALED_LINEAR);
    assert_int_equal(da_prediction_parse("v_prediction", &p), DA_OK);
    assert_int_equal(p, DA_PRED_V);

    da_schedule s;
    expect_fail(da_schedule_init(&s, DA_BETA_LINEAR, 0, 1e-4, 0.02), DA_ERR_INVALID, NULL);
    expect_fail(da_schedule_init(&s, DA_BETA_LINEAR, 1000, 1e-4, 2.0), DA_ERR_INVALID, NULL);
    expect_fail(da_schedule_init(&s, DA_BETA_LINEAR, 1000, NAN, 0.02), DA_ERR_INVALID, NULL);
    sched_make(&s, DA_BETA_LINEAR, 1000, 1e-4, 0.02);

    da_ddim_config dc = da_ddim_config_default();
    da_ddim ddim;
    expect_fail(da_ddim_init(&ddim, &s, &dc, 1001), DA_ERR_INVALID, "1001");
    expect_fail(da_ddim_init(&ddim, &s, &dc, 0), DA_ERR_INVALID, NULL);
    dc.steps_offset = 1;   /* leading with 1000 steps + offset 1 reaches t = 1000 */
    expect_fail(da_ddim_init(&ddim, &s, &dc, 1000), DA_ERR_INVALID, "1000");
    dc = da_ddim_config_default();
    dc.eta = -1.0f;
    expect_fail(da_ddim_init(&ddim, &s, &dc, 10), DA_ERR_INVALID, NULL);
    da_ddpm_config pc = da_ddpm_config_default();
    da_ddpm ddpm;
    expect_fail(da_ddpm_init(&ddpm, &s, &pc, 2000), DA_ERR_INVALID, "2000");
    da_euler eu;
    expect_fail(da_euler_init(&eu, &s, DA_PRED_EPSILON, 0), DA_ERR_INVALID, NULL);

    /* step-time errors */
    float x[NS], m[NS], out[NS], noise[NS];
    fixture(x, 0);
    dummy_model(m, x, 500.0f, NS);
    dc = da_ddim_config_default();
    dc.eta = 0.5f;
    assert_int_equal(da_ddim_init(&ddim, &s, &dc, 10), DA_OK);
    expect_fail(da_ddim_step(&ddim, out, NULL, m, 500, x, NULL, NS), DA_ERR_INVALID, "noise");
    expect_fail(da_ddim_step(&ddim, out, NULL, m, 1000, x, noise, NS), DA_ERR_RANGE, "1000");
    expect_fail(da_ddim_step(&ddim, out, NULL, m, -1, x, noise, NS), DA_ERR_RANGE, NULL);
    /* the last step with set_alpha_to_one has std = 0: no density */
    float lp[4];
    expect_fail(da_ddim_logprob_forward(lp, m, x, x, &ddim, 0, 4, NS / 4), DA_ERR_INVALID, "std");
    da_ddim_free(&ddim);
    dc.eta = 0.0f;
    assert_int_equal(da_ddim_init(&ddim, &s, &dc, 10), DA_OK);
    expect_fail(da_ddim_logprob_forward(lp, m, x, x, &ddim, 500, 4, NS / 4), DA_ERR_INVALID, "eta");
    da_ddim_free(&ddim);
    assert_int_equal(da_ddpm_init(&ddpm, &s, &pc, 1000), DA_OK);
    expect_fail(da_ddpm_step(&ddpm, out, NULL, m, 5, x, NULL, NS), DA_ERR_INVALID, "noise");
    assert_int_equal(da_ddpm_step(&ddpm, out, NULL, m, 0, x, NULL, NS), DA_OK);  /* t = 0 adds no noise */
    da_ddpm_free(&ddpm);

    /* training targets and Euler: an index out of range is an error, and
     * nothing is written (out keeps its sentinel) */
    int ts[2] = {999, 1000};
    out[0] = 42.0f;
    expect_fail(da_add_noise(&s, out, x, m, ts, 2, NS / 2), DA_ERR_RANGE, "1000");
    expect_fail(da_velocity(&s, out, x, m, ts, 2, NS / 2), DA_ERR_RANGE, "1000");
    ts[1] = -1;
    expect_fail(da_add_noise(&s, out, x, m, ts, 2, NS / 2), DA_ERR_RANGE, "-1");
    assert_true(out[0] == 42.0f);
    assert_int_equal(da_euler_init(&eu, &s, DA_PRED_EPSILON, 10), DA_OK);
    expect_fail(da_euler_step(&eu, out, NULL, m, 10, x, NS), DA_ERR_RANGE, "10");
    expect_fail(da_euler_scale_model_input(&eu, out, x, -1, NS), DA_ERR_RANGE, "-1");
    assert_true(out[0] == 42.0f);
    assert_int_equal(da_euler_step(&eu, out, NULL, m, 9, x, NS), DA_OK);
    da_euler_free(&eu);

    /* the logprob op: model_out, x_prev and sample of one size */
    dc.eta = 0.5f;
    assert_int_equal(da_ddim_init(&ddim, &s, &dc, 10), DA_OK);
    da_tape tp;
    da_tape_init(&tp, 1 << 16);
    int s4[2] = {4, NS / 4}, s2[2] = {2, NS / 4};
    da_tensor *mt = da_leaf(&tp, m, NULL, 2, s4), *xt = da_leaf(&tp, x, NULL, 2, s4);
    assert_null(da_ddim_logprob(&tp, &ddim, mt, da_leaf(&tp, x, NULL, 2, s2), xt, 500));
    assert_non_null(strstr(da_last_error(), "one size"));
    assert_null(da_ddim_logprob(&tp, &ddim, mt, xt, NULL, 500));
    assert_null(da_ddim_logprob(&tp, &ddim, mt, xt, xt, 1000));
    assert_non_null(da_ddim_logprob(&tp, &ddim, mt, xt, xt, 500));
    da_tape_free(&tp);
    da_ddim_free(&ddim);
    da_schedule_free(&s);
}

/* ---- DDIM peer: diffusers tests/schedulers/test_scheduler_ddim.py ---- */

/* full_loop(): linear 1e-4..beta_end 0.02, clip_sample, 10 steps, eta 0 */
static void ddim_full_loop(float *x, double beta_start, da_prediction pred, int set_alpha_to_one)
{
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1000, beta_start, 0.02);
    da_ddim_config c = da_ddim_config_default();
    c.prediction = pred;
    c.set_alpha_to_one = set_alpha_to_one;
    da_ddim d;
    assert_int_equal(da_ddim_init(&d, &s, &c, 10), DA_OK);
    fixture(x, 0);
    float m[NS];
    for (int i = 0; i < d.n_steps; i++) {
        int t = d.timesteps[i];
        dummy_model(m, x, (float)t, NS);
        assert_int_equal(da_ddim_step(&d, x, NULL, m, t, x, NULL, NS), DA_OK);
    }
    da_ddim_free(&d);
    da_schedule_free(&s);
}

static void test_ddim_peer(void **state)
{
    (void)state;
    float x[NS];
    ddim_full_loop(x, 0.0001, DA_PRED_EPSILON, 1);
    check_peer("ddim no_noise", x, 172.0067, 0.223967);
    ddim_full_loop(x, 0.0001, DA_PRED_V, 1);
    check_peer("ddim v_prediction", x, 52.5302, 0.0684);
    ddim_full_loop(x, 0.01, DA_PRED_EPSILON, 1);
    check_peer("ddim set_alpha_to_one", x, 149.8295, 0.1951);
    ddim_full_loop(x, 0.01, DA_PRED_EPSILON, 0);
    check_peer("ddim no_set_alpha_to_one", x, 149.0784, 0.1941);

    /* test_full_loop_with_noise: add dummy_noise_deter at timesteps[8] = 100,
     * then step through timesteps[8:] = (100, 0) */
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1000, 0.0001, 0.02);
    da_ddim_config c = da_ddim_config_default();
    da_ddim d;
    assert_int_equal(da_ddim_init(&d, &s, &c, 10), DA_OK);
    float noise[NS], m[NS];
    fixture(x, 0);
    fixture(noise, 1);
    int t0 = d.timesteps[8];
    assert_int_equal(t0, 100);
    da_add_noise(&s, x, x, noise, &t0, 1, NS);
    for (int i = 8; i < d.n_steps; i++) {
        int t = d.timesteps[i];
        dummy_model(m, x, (float)t, NS);
        assert_int_equal(da_ddim_step(&d, x, NULL, m, t, x, NULL, NS), DA_OK);
    }
    check_peer("ddim with_noise", x, 354.5418, 0.4616);

    /* test_variance: |_get_variance(t, t_prev) - want| < 1e-5 */
    const int tv[][2] = {{0, 0}, {420, 400}, {980, 960}, {487, 486}, {999, 998}};
    const double want[] = {0.0, 0.14771, 0.32460, 0.00979, 0.02};
    for (int i = 0; i < 5; i++) {
        double v = da_ddim_variance(&d, tv[i][0], tv[i][1]);
        if (!(fabs(v - want[i]) < 1e-5)) fail_msg("ddim variance(%d, %d) = %.6f, want %.5f", tv[i][0], tv[i][1], v, want[i]);
    }
    da_ddim_free(&d);
    da_schedule_free(&s);
}

/* ---- DDPM peer: diffusers tests/schedulers/test_scheduler_ddpm.py ---- */

/* generator = torch.manual_seed(0) once; per step t > 0 a randn of the
 * sample's shape from it (one da_rng); timesteps from t_first down to 0 */
static void ddpm_loop(float *x, da_prediction pred, int t_first)
{
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1000, 0.0001, 0.02);
    da_ddpm_config c = da_ddpm_config_default();   /* fixed_small, clip_sample */
    c.prediction = pred;
    da_ddpm d;
    assert_int_equal(da_ddpm_init(&d, &s, &c, 1000), DA_OK);
    da_rng rng;
    da_rng_seed(&rng, 0);
    float m[NS], noise[NS];
    for (int t = t_first; t >= 0; t--) {
        dummy_model(m, x, (float)t, NS);
        assert_int_equal(da_ddpm_step_rng(&d, x, NULL, m, t, x, &rng, noise, NS), DA_OK);
    }
    da_ddpm_free(&d);
    da_schedule_free(&s);
}

static void test_ddpm_peer(void **state)
{
    (void)state;
    float x[NS];
    fixture(x, 0);
    ddpm_loop(x, DA_PRED_EPSILON, 999);
    check_peer("ddpm no_noise", x, 258.9606, 0.3372);
    fixture(x, 0);
    ddpm_loop(x, DA_PRED_V, 999);
    check_peer("ddpm v_prediction", x, 202.0296, 0.2631);

    /* test_full_loop_with_noise: noise dummy_noise_deter at timesteps[998] = 1,
     * then steps 1 and 0 */
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1000, 0.0001, 0.02);
    float noise[NS];
    fixture(x, 0);
    fixture(noise, 1);
    int t0 = 1;
    da_add_noise(&s, x, x, noise, &t0, 1, NS);
    ddpm_loop(x, DA_PRED_EPSILON, 1);
    check_peer("ddpm with_noise", x, 387.9466, 0.5051);

    /* test_variance: |_get_variance(t) - want| < 1e-5 */
    da_ddpm_config c = da_ddpm_config_default();
    da_ddpm d;
    assert_int_equal(da_ddpm_init(&d, &s, &c, 1000), DA_OK);
    const int tv[] = {0, 487, 999};
    const double want[] = {0.0, 0.00979, 0.02};
    for (int i = 0; i < 3; i++) {
        double v = da_ddpm_variance(&d, tv[i]);
        if (!(fabs(v - want[i]) < 1e-5)) fail_msg("ddpm variance(%d) = %.6f, want %.5f", tv[i], v, want[i]);
    }
    da_ddpm_free(&d);
    da_schedule_free(&s);
}

/* ---- Euler peer: diffusers tests/schedulers/test_scheduler_euler.py ----
 * config num_train_timesteps 1100, linear 1e-4..0.02, 10 steps; the loop
 * keeps the scaled sample (sample = scale_model_input(sample, t)). */
static void euler_loop(float *x, da_prediction pred)
{
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1100, 0.0001, 0.02);
    da_euler e;
    assert_int_equal(da_euler_init(&e, &s, pred, 10), DA_OK);
    fixture(x, 0);
    for (int i = 0; i < NS; i++) x[i] = x[i] * e.init_noise_sigma;
    float m[NS];
    for (int i = 0; i < e.n_steps; i++) {
        da_euler_scale_model_input(&e, x, x, i, NS);
        dummy_model(m, x, e.timesteps[i], NS);
        da_euler_step(&e, x, NULL, m, i, x, NS);
    }
    da_euler_free(&e);
    da_schedule_free(&s);
}

static void test_euler_peer(void **state)
{
    (void)state;
    float x[NS];
    /* test_full_loop_no_noise: 10.0807 / 0.0131 */
    euler_loop(x, DA_PRED_EPSILON);
    check_peer("euler no_noise", x, 10.0807, 0.0131);
    /* test_full_loop_with_v_prediction: 0.0002 / 2.2676e-06 */
    euler_loop(x, DA_PRED_V);
    check_peer("euler v_prediction", x, 0.0002, 2.2676e-06);
}

/* ---- loops against the torch re-implementation (schedule.py) ----
 * The C code performs the same float32 operations in the same order as the
 * torch code, and on x86-64 every loop comes out bit-identical except
 * fixed_small_log, whose exp(0.5 log v) uses glibc's expf/logf where torch
 * uses its own (6e-7 after 50 steps). Other libms (ARM) may differ by an ulp
 * per step too; values are <= ~1.5 and the maps contract, so 1e-5 absolute
 * is ample, while a semantic slip (a wrong coefficient, a missing clip,
 * noise drawn at the wrong step) moves values by >= 1e-3. */
#define LOOP_ATOL 1e-5

typedef struct ddim_case {
    const char *name;
    const char *sched;
    int n_steps;
    float eta;
    da_prediction pred;
    int clip, set_alpha_to_one, offset, clipped_eps;
} ddim_case;

static const sched_cfg *sched_by_name(const char *name)
{
    for (size_t c = 0; c < sizeof SCHEDULES / sizeof SCHEDULES[0]; c++)
        if (strcmp(SCHEDULES[c].name, name) == 0) return &SCHEDULES[c];
    fail_msg("no schedule %s", name);
    return NULL;
}

/* "sample" predictions use dummy_model at t + 1 so the last step is not 0 */
static float model_t(da_prediction pred, int t)
{
    return (float)(pred == DA_PRED_SAMPLE ? t + 1 : t);
}

static void run_ddim_case(da_safetensors *st, const ddim_case *k)
{
    const sched_cfg *g = sched_by_name(k->sched);
    da_schedule s;
    sched_make(&s, g->kind, g->T, g->b0, g->b1);
    da_ddim_config c = da_ddim_config_default();
    c.prediction = k->pred;
    c.eta = k->eta;
    c.clip_sample = k->clip;
    c.set_alpha_to_one = k->set_alpha_to_one;
    c.steps_offset = k->offset;
    c.use_clipped_model_output = k->clipped_eps;
    da_ddim d;
    assert_int_equal(da_ddim_init(&d, &s, &c, k->n_steps), DA_OK);
    da_rng rng;
    da_rng_seed(&rng, 0);
    float x[NS], m[NS], noise[NS];
    fixture(x, 0);
    for (int i = 0; i < d.n_steps; i++) {
        int t = d.timesteps[i];
        dummy_model(m, x, model_t(k->pred, t), NS);
        assert_int_equal(da_ddim_step_rng(&d, x, NULL, m, t, x, &rng, noise, NS), DA_OK);
    }
    char name[64];
    snprintf(name, sizeof name, "loop.%s", k->name);
    float *want = tu_ref(st, name, NS);
    tu_assert_close(name, x, want, NS, LOOP_ATOL, 0.0);
    free(want);
    da_ddim_free(&d);
    da_schedule_free(&s);
}

static void run_ddpm_case(da_safetensors *st, const char *name, int n_steps, da_prediction pred,
                          da_variance_type var, int clip)
{
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1000, 0.0001, 0.02);
    da_ddpm_config c = da_ddpm_config_default();
    c.prediction = pred;
    c.variance = var;
    c.clip_sample = clip;
    da_ddpm d;
    assert_int_equal(da_ddpm_init(&d, &s, &c, n_steps), DA_OK);
    da_rng rng;
    da_rng_seed(&rng, 0);
    float x[NS], m[NS], noise[NS];
    fixture(x, 0);
    for (int i = 0; i < d.n_steps; i++) {
        int t = d.timesteps[i];
        dummy_model(m, x, model_t(pred, t), NS);
        assert_int_equal(da_ddpm_step_rng(&d, x, NULL, m, t, x, &rng, noise, NS), DA_OK);
    }
    float *want = tu_ref(st, name, NS);
    tu_assert_close(name, x, want, NS, LOOP_ATOL, 0.0);
    free(want);
    da_ddpm_free(&d);
    da_schedule_free(&s);
}

static void test_loops_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("schedule");
    const ddim_case ddim_cases[] = {
        {"ddim_eta", "linear", 10, 0.8f, DA_PRED_EPSILON, 1, 0, 0, 0},
        {"ddim_v_eta", "scaled_linear", 25, 1.0f, DA_PRED_V, 1, 0, 1, 1},
        {"ddim_sample_noclip", "linear", 20, 0.0f, DA_PRED_SAMPLE, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof ddim_cases / sizeof ddim_cases[0]; i++) run_ddim_case(st, &ddim_cases[i]);
    run_ddpm_case(st, "loop.ddpm", 1000, DA_PRED_EPSILON, DA_VAR_FIXED_SMALL, 1);
    run_ddpm_case(st, "loop.ddpm50_large_v", 50, DA_PRED_V, DA_VAR_FIXED_LARGE, 1);
    run_ddpm_case(st, "loop.ddpm50_smalllog_sample", 50, DA_PRED_SAMPLE, DA_VAR_FIXED_SMALL_LOG, 0);

    /* Euler: sigmas and timesteps are a float64 interpolation rounded once
     * to float32 on both sides: bit-identical */
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1100, 0.0001, 0.02);
    da_euler e;
    assert_int_equal(da_euler_init(&e, &s, DA_PRED_EPSILON, 10), DA_OK);
    float *ts = tu_ref(st, "euler.timesteps", 10), *sg = tu_ref(st, "euler.sigmas", 11);
    tu_assert_bits("euler.timesteps", e.timesteps, ts, 10);
    tu_assert_bits("euler.sigmas", e.sigmas, sg, 11);
    free(ts);
    free(sg);
    da_euler_free(&e);
    da_schedule_free(&s);
    float x[NS];
    const char *names[2] = {"loop.euler", "loop.euler_v"};
    for (int p = 0; p < 2; p++) {
        euler_loop(x, p == 0 ? DA_PRED_EPSILON : DA_PRED_V);
        float *want = tu_ref(st, names[p], NS);
        tu_assert_close(names[p], x, want, NS, LOOP_ATOL, 0.0);
        free(want);
    }
    da_st_close(st);
}

/* ---- DDIM log-probability ---- */

/* The DDPO setting: linear schedule, 50 steps, eta 1, set_alpha_to_one off. */
static void logprob_sampler(da_schedule *s, da_ddim *d, da_prediction pred, int clip, int clipped_eps, float eta)
{
    sched_make(s, DA_BETA_LINEAR, 1000, 0.0001, 0.02);
    da_ddim_config c = da_ddim_config_default();
    c.prediction = pred;
    c.clip_sample = clip;
    c.use_clipped_model_output = clipped_eps;
    c.eta = eta;
    c.set_alpha_to_one = 0;
    assert_int_equal(da_ddim_init(d, s, &c, 50), DA_OK);
}

/* Against torch's float64 evaluation of design §6 (with clip_sample, so the
 * clamp's gradient is exercised). The C mean is float32 (the step's own):
 * ~1e-7 relative on r = x_prev - mean, and logp ~ r^2/std^2 with std ~0.2,
 * so ~1e-6 relative on logp and on the gradient; 1e-4 leaves margin. */
static void test_ddim_logprob_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("schedule");
    da_schedule s;
    da_ddim d;
    logprob_sampler(&s, &d, DA_PRED_EPSILON, 1, 0, 1.0f);
    const size_t n = 2 * 4 * 4 * 4;
    float *m = tu_ref(st, "logprob.model_out", n), *xp = tu_ref(st, "logprob.x_prev", n);
    float *x = tu_ref(st, "logprob.sample", n), *want = tu_ref(st, "logprob.logp", 2);
    float *dout = tu_ref(st, "logprob.dout", 2), *gwant = tu_ref(st, "logprob.grad", n);
    float lp[2], *g = calloc(n, sizeof(float));
    assert_int_equal(da_ddim_logprob_forward(lp, m, xp, x, &d, 500, 2, n / 2), DA_OK);
    tu_assert_close("logprob vs torch", lp, want, 2, 1e-5, 1e-4);
    da_ddim_logprob_backward(g, dout, m, xp, x, &d, 500, 2, n / 2);
    tu_assert_close("dlogprob/dmodel_out vs torch", g, gwant, n, 1e-6, 1e-4);
    /* the case exercises both sides of the clamp */
    int inside = 0, outside = 0;
    double a_t = s.alphas_cumprod[500];
    for (size_t i = 0; i < n; i++) {
        double raw = ((double)x[i] - sqrt(1 - a_t) * m[i]) / sqrt(a_t);
        if (fabs(raw) > 1) outside++;
        else inside++;
    }
    assert_true(inside > 0 && outside > 0);
    free(m), free(xp), free(x), free(want), free(dout), free(gwant), free(g);
    da_ddim_free(&d);
    da_schedule_free(&s);
    da_st_close(st);
}

/* Independent double computation, and a step's own sample: with noise z,
 * x_prev = mean + std z, so logp = mean(-z^2/2) - log std - log sqrt(2 pi). */
static void test_ddim_logprob_closed_form(void **state)
{
    (void)state;
    da_schedule s;
    da_ddim d;
    logprob_sampler(&s, &d, DA_PRED_EPSILON, 1, 0, 1.0f);
    const int B = 4;
    const size_t n_per = NS / 4;
    float x[NS], m[NS], z[NS], xp[NS], mean[NS], x0[NS];
    fixture(x, 0);
    for (size_t i = 0; i < NS; i++) x[i] = 2.0f * x[i] - 1.0f;
    dummy_model(m, x, 700.0f, NS);
    da_rng rng;
    da_rng_seed(&rng, 11);
    da_randn(&rng, z, NS);
    int t = 700, tp = da_ddim_prev_timestep(&d, t);
    assert_int_equal(tp, 680);
    assert_int_equal(da_ddim_step(&d, xp, x0, m, t, x, z, NS), DA_OK);

    /* the mean: a step with zero noise */
    float zeros[NS] = {0};
    assert_int_equal(da_ddim_step(&d, mean, NULL, m, t, x, zeros, NS), DA_OK);
    double a_t = s.alphas_cumprod[t], a_p = s.alphas_cumprod[tp];
    double std = sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p));
    for (size_t i = 0; i < NS; i++) {
        /* x_prev = mean + std z: both sides float32 with one rounding each;
         * 2e-7 relative to |mean| + |std z| <~ 3 */
        double want = (double)mean[i] + std * z[i];
        if (fabs(xp[i] - want) > 1e-6) fail_msg("x_prev[%zu] = %.9g, mean + std z = %.9g", i, xp[i], want);
        /* the mean from x0 in double: clip_sample makes x0 the clamp of the estimate */
        double x0d = ((double)x[i] - sqrt(1 - a_t) * m[i]) / sqrt(a_t);
        x0d = x0d < -1 ? -1 : (x0d > 1 ? 1 : x0d);
        double md = sqrt(a_p) * x0d + sqrt(1 - a_p - std * std) * m[i];
        if (fabs(mean[i] - md) > 1e-5)   /* float32 step vs double: ~1e-7 of |terms| <~ 10 */
            fail_msg("mean[%zu] = %.9g, double %.9g", i, mean[i], md);
    }
    float lp[4];
    assert_int_equal(da_ddim_logprob_forward(lp, m, xp, x, &d, t, B, n_per), DA_OK);
    for (int b = 0; b < B; b++) {
        double acc = 0.0, acc_z = 0.0;
        for (size_t i = 0; i < n_per; i++) {
            size_t k = (size_t)b * n_per + i;
            double r = (double)xp[k] - (double)mean[k];
            acc += -r * r / (2 * std * std) - log(std) - log(sqrt(2 * M_PI));
            acc_z += -(double)z[k] * z[k] / 2 - log(std) - log(sqrt(2 * M_PI));
        }
        acc /= (double)n_per;
        acc_z /= (double)n_per;
        /* same formula in double from the same float mean: float rounding of
         * the output only (values ~1, 1e-6) */
        if (fabs(lp[b] - acc) > 1e-5) fail_msg("logp[%d] = %.8g, double %.8g", b, lp[b], acc);
        /* the Gaussian log-density of the drawn z: x_prev - mean differs from
         * std z by the rounding of x_prev (~1e-7 / std per element), 1e-4 */
        if (fabs(lp[b] - acc_z) > 1e-4) fail_msg("logp[%d] = %.8g, density of z %.8g", b, lp[b], acc_z);
    }
    da_ddim_free(&d);
    da_schedule_free(&s);
}

typedef struct lp_ctx {
    da_ddim *d;
    int t;
} lp_ctx;

static da_tensor *build_logprob(da_tape *tp, da_tensor **in, void *ctx)
{
    lp_ctx *c = ctx;
    da_tensor *out = da_ddim_logprob(tp, c->d, in[0], in[1], in[2], c->t);
    assert_non_null(out);
    return out;
}

/* Finite differences without clip_sample (the clamp's kinks would break
 * central differences; its gradient is checked against torch above).
 * logp is quadratic in model_out, so central differences are exact up to
 * f32 rounding of logp (~3e-7 abs) / 2 eps = 1.5e-5; gradients are
 * O(0.1-1): atol 2e-4, rtol 1e-3. */
static void test_ddim_logprob_grad(void **state)
{
    (void)state;
    const da_prediction preds[3] = {DA_PRED_EPSILON, DA_PRED_V, DA_PRED_SAMPLE};
    for (int p = 0; p < 3; p++) {
        da_schedule s;
        da_ddim d;
        logprob_sampler(&s, &d, preds[p], 0, 0, 0.9f);
        lp_ctx ctx = {&d, 300};
        tu_case c = {.n_in = 3, .ndim = {4, 4, 4}, .shape = {{2, 2, 3, 3}, {2, 2, 3, 3}, {2, 2, 3, 3}},
                     .needs_grad = {1, 0, 0}};
        for (int i = 0; i < 3; i++) c.data[i] = tu_alloc_fill(36, 40u + (uint32_t)i, -1.0f, 1.0f);
        char what[64];
        snprintf(what, sizeof what, "ddim logprob (prediction %d)", p);
        tu_gradcheck(what, build_logprob, &ctx, &c, 1e-2, 2e-4, 1e-3);
        tu_check_threads(what, build_logprob, &ctx, &c);
        for (int i = 0; i < 3; i++) free(c.data[i]);
        da_ddim_free(&d);
        da_schedule_free(&s);
    }
}

/* ---- invariants ---- */

/* add_noise at t with eps, then the sampler's x0 estimate from the exact
 * model output (eps, v or x0) recovers x0. float32: x0 = (x_t -
 * sqrt(1-a) eps)/sqrt(a) amplifies the rounding of x_t by 1/sqrt(a), up to
 * ~1/sqrt(4e-5) = 160 at t = 999: tolerance 2e-4 there, 1e-6 at t = 10. */
static void test_add_noise_recovers_x0(void **state)
{
    (void)state;
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1000, 0.0001, 0.02);
    enum { B = 3, N = 64 };
    float x0[B * N], eps[B * N], xt[B * N], v[B * N], got[B * N], got_eps[B * N];
    tu_fill(x0, B * N, 1u, -1.0f, 1.0f);
    da_rng rng;
    da_rng_seed(&rng, 5);
    da_randn(&rng, eps, B * N);
    int ts[B] = {10, 500, 999};
    const double tol[B] = {1e-6, 2e-5, 2e-4};
    da_add_noise(&s, xt, x0, eps, ts, B, N);
    da_velocity(&s, v, x0, eps, ts, B, N);
    for (int b = 0; b < B; b++) {
        float a = s.alphas_cumprod[ts[b]];
        size_t o = (size_t)b * N;
        const float *outs[3] = {eps + o, v + o, x0 + o};
        const da_prediction preds[3] = {DA_PRED_EPSILON, DA_PRED_V, DA_PRED_SAMPLE};
        for (int p = 0; p < 3; p++) {
            da_predict_x0_eps(got + o, got_eps + o, outs[p], xt + o, N, a, preds[p]);
            char what[64];
            snprintf(what, sizeof what, "x0 from %d at t=%d", p, ts[b]);
            tu_assert_close(what, got + o, x0 + o, N, tol[b], 0.0);
            /* eps recovered too (sample prediction divides by sqrt(1-a) >= 0.1) */
            snprintf(what, sizeof what, "eps from %d at t=%d", p, ts[b]);
            tu_assert_close(what, got_eps + o, eps + o, N, 1e-4, 0.0);
        }
    }
    /* add_noise matches its formula per item (float32, same op order) */
    for (int b = 0; b < B; b++) {
        float a = s.alphas_cumprod[ts[b]];
        for (int i = 0; i < N; i++) {
            size_t k = (size_t)b * N + i;
            float want = sqrtf(a) * x0[k] + sqrtf(1.0f - a) * eps[k];
            if (xt[k] != want) fail_msg("add_noise[%zu] %.9g != %.9g", k, xt[k], want);
        }
    }
    /* a DDIM step's x0_pred is the same estimate, clipped */
    da_ddim_config c = da_ddim_config_default();
    da_ddim d;
    assert_int_equal(da_ddim_init(&d, &s, &c, 10), DA_OK);
    float prev[N], x0p[N];
    assert_int_equal(da_ddim_step(&d, prev, x0p, eps, 10, xt, NULL, N), DA_OK);
    tu_assert_close("ddim x0_pred at t=10", x0p, x0, N, 1e-6, 0.0);
    da_ddim_free(&d);
    da_schedule_free(&s);
}

static void test_cfg(void **state)
{
    (void)state;
    enum { N = 257 };
    float u[N], c[N], out[N];
    tu_fill(u, N, 3u, -3.0f, 3.0f);
    tu_fill(c, N, 4u, -3.0f, 3.0f);
    u[0] = 1e8f, c[0] = 1.0f;   /* eps_u + (eps_c - eps_u) would round to 0 here */
    da_cfg_combine(out, u, c, 1.0f, N);
    tu_assert_bits("cfg w=1 is eps_c", out, c, N);
    da_cfg_combine(out, u, c, 0.0f, N);
    tu_assert_bits("cfg w=0 is eps_u", out, u, N);
    u[0] = 0.5f;
    da_cfg_combine(out, u, c, 7.5f, N);
    for (int i = 0; i < N; i++) {
        double want = (double)u[i] + 7.5 * ((double)c[i] - (double)u[i]);
        /* three float32 roundings on values up to ~50: 1e-5 absolute */
        if (fabs(out[i] - want) > 1e-5) fail_msg("cfg[%d] = %.9g, want %.9g", i, out[i], want);
    }
    /* in place into eps_u */
    float u2[N];
    memcpy(u2, u, sizeof u2);
    da_cfg_combine(u2, u2, c, 7.5f, N);
    tu_assert_bits("cfg in place", u2, out, N);
}

/* eta = 0: no randomness enters (the noise buffer is ignored), two runs give
 * the same bits, and stepping in place equals stepping out of place. */
static void test_ddim_deterministic(void **state)
{
    (void)state;
    da_schedule s;
    sched_make(&s, DA_BETA_SCALED_LINEAR, 1000, 0.00085, 0.012);
    da_ddim_config c = da_ddim_config_default();
    c.steps_offset = 1;
    da_ddim d;
    assert_int_equal(da_ddim_init(&d, &s, &c, 20), DA_OK);
    float x1[NS], x2[NS], m[NS], junk[NS], out[NS];
    fixture(x1, 0);
    fixture(x2, 0);
    tu_fill(junk, NS, 9u, -5.0f, 5.0f);
    for (int i = 0; i < d.n_steps; i++) {
        int t = d.timesteps[i];
        dummy_model(m, x1, (float)t, NS);
        assert_int_equal(da_ddim_step(&d, out, NULL, m, t, x1, NULL, NS), DA_OK);
        memcpy(x1, out, sizeof x1);
        dummy_model(m, x2, (float)t, NS);
        assert_int_equal(da_ddim_step(&d, x2, NULL, m, t, x2, junk, NS), DA_OK);
    }
    tu_assert_bits("ddim eta=0 repeat/in-place", x2, x1, NS);
    /* step_rng with eta = 0 draws nothing */
    da_rng r1, r2;
    da_rng_seed(&r1, 3);
    da_rng_seed(&r2, 3);
    assert_int_equal(da_ddim_step_rng(&d, out, NULL, m, d.timesteps[0], x1, &r1, junk, NS), DA_OK);
    assert_int_equal(da_rng_u32(&r1), da_rng_u32(&r2));
    da_ddim_free(&d);
    da_schedule_free(&s);
}

/* DDPM variance types on the full chain (a_prev = alphas_cumprod[t-1]):
 * fixed_large is beta_t (1 - a_t/a_prev recomputes it, ~1e-7 relative off
 * for beta ~1e-4 since cancellation in 1 - ratio costs ~2^-24/beta: 1e-3
 * relative), fixed_small_log's exp(0.5 log v) is sqrt(v) to ~1e-6. */
static void test_ddpm_variance_types(void **state)
{
    (void)state;
    da_schedule s;
    sched_make(&s, DA_BETA_LINEAR, 1000, 0.0001, 0.02);
    da_ddpm_config c = da_ddpm_config_default();
    da_ddpm small, large;
    assert_int_equal(da_ddpm_init(&small, &s, &c, 1000), DA_OK);
    c.variance = DA_VAR_FIXED_LARGE;
    assert_int_equal(da_ddpm_init(&large, &s, &c, 1000), DA_OK);
    for (int t = 1; t < 1000; t += 37) {
        double vl = da_ddpm_variance(&large, t), b = s.betas[t];
        if (fabs(vl - b) > 1e-3 * b) fail_msg("fixed_large variance(%d) = %.9g, beta %.9g", t, vl, b);
        double vs = da_ddpm_variance(&small, t);
        double want = (1.0 - s.alphas_cumprod[t - 1]) / (1.0 - s.alphas_cumprod[t]) * b;
        if (fabs(vs - want) > 2e-3 * want) fail_msg("fixed_small variance(%d) = %.9g, want %.9g", t, vs, want);
        if (!(vs <= vl)) fail_msg("posterior variance %.9g above beta %.9g at t=%d", vs, vl, t);
    }
    /* small vs small_log: the same step up to the std's rounding */
    c.variance = DA_VAR_FIXED_SMALL_LOG;
    da_ddpm slog;
    assert_int_equal(da_ddpm_init(&slog, &s, &c, 1000), DA_OK);
    float x[NS], m[NS], z[NS], a[NS], b2[NS];
    fixture(x, 0);
    dummy_model(m, x, 600.0f, NS);
    tu_fill(z, NS, 12u, -2.0f, 2.0f);
    assert_int_equal(da_ddpm_step(&small, a, NULL, m, 600, x, z, NS), DA_OK);
    assert_int_equal(da_ddpm_step(&slog, b2, NULL, m, 600, x, z, NS), DA_OK);
    tu_assert_close("fixed_small vs fixed_small_log", b2, a, NS, 1e-6, 1e-6);
    da_ddpm_free(&small);
    da_ddpm_free(&large);
    da_ddpm_free(&slog);
    da_schedule_free(&s);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linspace_bits),
        cmocka_unit_test(test_schedule_bits),
        cmocka_unit_test(test_timesteps),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_ddim_peer),
        cmocka_unit_test(test_ddpm_peer),
        cmocka_unit_test(test_euler_peer),
        cmocka_unit_test(test_loops_vs_torch),
        cmocka_unit_test(test_ddim_logprob_vs_torch),
        cmocka_unit_test(test_ddim_logprob_closed_form),
        cmocka_unit_test(test_ddim_logprob_grad),
        cmocka_unit_test(test_add_noise_recovers_x0),
        cmocka_unit_test(test_cfg),
        cmocka_unit_test(test_ddim_deterministic),
        cmocka_unit_test(test_ddpm_variance_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
