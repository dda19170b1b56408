/* Full-sample PyTorch parity (issue 3, item 8): the C pipeline against
 * tests/oracle/sample_parity.py on the same weights directory (recorded in
 * the reference file): a 20-step DDIM sample with CFG of two prompts. Checks
 * the tokenizer's ids, x_T, the text features, the latent after every step,
 * the final latent (within 1e-3) and the decoded image.
 *
 * The reference names its weights directory: the shipped weights/ (the
 * script's --random DIR retargets it to tiny random models without a code
 * change). A reference whose directory is missing is a failure, never a
 * skip. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_N 8
#define MAX_STEPS 100

static da_safetensors *g_ref;
static da_pipeline *g_pipe;
static const char *g_prompt[MAX_N];
static uint64_t g_seed[MAX_N];
static int g_n;
static da_sample_opts g_opts;
static size_t g_nper;          /* latent values per image */

static const char *meta(const char *key)
{
    const char *v = da_st_meta_get(g_ref, key);
    if (!v) fail_msg("sample_parity.safetensors: no metadata '%s'", key);
    return v;
}

static int setup(void **state)
{
    (void)state;
    if (da_st_open("tests/oracle/sample_parity.safetensors", &g_ref) != DA_OK) {
        fprintf(stderr, "cannot read tests/oracle/sample_parity.safetensors: %s (run from the repo root)\n",
                da_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    da_pipeline_free(g_pipe);
    da_st_close(g_ref);
    return 0;
}

/* the reference's weights, prompts, seeds and options; the pipeline over them */
static void test_load(void **state)
{
    (void)state;
    const char *dir = meta("weights");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/%s.safetensors", dir, meta("unet"));
    if (access(probe, R_OK))
        fail_msg("the reference was made from '%s', but %s is missing: restore it, or regenerate the reference "
                 "with /usr/bin/python3 tests/oracle/sample_parity.py",
                 dir, probe);
    if (da_pipeline_load(&g_pipe, dir, meta("unet")) != DA_OK) fail_msg("%s", da_last_error());
    g_n = atoi(meta("n"));
    assert_true(g_n >= 1 && g_n <= MAX_N);
    for (int i = 0; i < g_n; i++) {
        char k[32];
        snprintf(k, sizeof k, "prompt.%d", i);
        g_prompt[i] = meta(k);
        snprintf(k, sizeof k, "seed.%d", i);
        g_seed[i] = strtoull(meta(k), NULL, 10);
    }
    g_opts = da_sample_opts_default();
    assert_int_equal(da_sampler_parse(meta("sampler"), &g_opts.sampler), DA_OK);
    g_opts.steps = atoi(meta("steps"));
    g_opts.cfg = strtof(meta("cfg"), NULL);
    g_opts.eta = strtof(meta("eta"), NULL);
    assert_true(g_opts.steps >= 1 && g_opts.steps <= MAX_STEPS);
    g_nper = (size_t)g_pipe->vae->cfg.latent_channels * g_pipe->latent_h * g_pipe->latent_w;
}

/* Python's tokenizer is part of the oracle: it must give the C ids */
static void test_tokens_and_noise(void **state)
{
    (void)state;
    if (!g_pipe) skip();
    float *ids = tu_ref(g_ref, "ids", (size_t)g_n * DA_MAX_TOKENS);
    float *keep = tu_ref(g_ref, "keep", (size_t)g_n * DA_MAX_TOKENS);
    for (int i = 0; i < g_n; i++) {
        int c_ids[DA_MAX_TOKENS];
        uint8_t c_keep[DA_MAX_TOKENS];
        assert_int_equal(da_prompt_tokens(g_prompt[i], c_ids, c_keep), DA_OK);
        for (int j = 0; j < DA_MAX_TOKENS; j++)
            if (c_ids[j] != (int)ids[i * DA_MAX_TOKENS + j] || c_keep[j] != (int)keep[i * DA_MAX_TOKENS + j])
                fail_msg("prompt %d token %d: C id %d keep %d, Python id %g keep %g", i, j, c_ids[j], c_keep[j],
                         ids[i * DA_MAX_TOKENS + j], keep[i * DA_MAX_TOKENS + j]);
    }
    /* x_T: the torch-compatible generator, bit for bit */
    float *xT = tu_ref(g_ref, "x_T", (size_t)g_n * g_nper);
    float *mine = malloc(g_nper * sizeof(float));
    for (int i = 0; i < g_n; i++) {
        da_initial_latent(g_seed[i], mine, g_nper);
        tu_assert_bits("x_T = torch.manual_seed(s); torch.randn(1, C, 8, 8)", mine, xT + (size_t)i * g_nper, g_nper);
    }
    free(mine);
    free(ids);
    free(keep);
    free(xT);
}

static double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double max_err(const float *a, const float *b, size_t n, size_t *at)
{
    double m = -1.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= m)) {   /* NaN counts as the worst */
            m = isnan(e) ? INFINITY : e;
            *at = i;
        }
    }
    return m;
}

/* the conditional text features (the UNet's context) */
static void test_text_features(void **state)
{
    (void)state;
    if (!g_pipe) skip();
    const da_st_tensor *t = da_st_find(g_ref, "context_cond");
    assert_non_null(t);
    float *ref = tu_ref(g_ref, "context_cond", 0);
    int ids[MAX_N * DA_MAX_TOKENS];
    uint8_t keep[MAX_N * DA_MAX_TOKENS];
    for (int i = 0; i < g_n; i++)
        assert_int_equal(da_prompt_tokens(g_prompt[i], ids + i * DA_MAX_TOKENS, keep + i * DA_MAX_TOKENS), DA_OK);
    da_tape tp;
    da_tape_init(&tp, 1 << 20);
    da_tape_set_grad(&tp, 0);
    da_tensor *f = da_text_encoder_forward(&tp, g_pipe->text, ids, keep, g_n, DA_MAX_TOKENS);
    assert_non_null(f);
    assert_int_equal(f->size, t->numel);
    /* f32 vs f32, different summation orders in 1-3 layers: ~1e-6 of the
     * features' magnitude (the model parity tests measure the same) */
    tu_assert_close("text features", f->data, ref, f->size, 2e-5 * fmax(1.0, max_abs(ref, f->size)), 0.0);
    da_tape_free(&tp);
    free(ref);
}

typedef struct traj {
    float *x;       /* (steps, n, C, h, w) latent after each step */
    int calls;
} traj;

static int record(da_step_info *info, void *user)
{
    traj *t = user;
    size_t n = (size_t)info->batch * info->channels * info->height * info->width;
    memcpy(t->x + (size_t)info->step * n, info->x_prev, n * sizeof(float));
    t->calls++;
    return 0;
}

/* Tolerance of a latent: 1e-3 absolute, the bound. Both sides are
 * f32 with different summation orders (~1e-7 relative per op); 20 steps of
 * CFG (w = 3) amplify that. Measured on the random reference models, whose
 * DDIM x0 estimates (x - sqrt(1-a) eps)/sqrt(a) blow the final latent up to
 * |x| ~ 300 because they are no eps predictors: 2.1e-4 absolute (7.7e-7 of
 * max |x|), so the bound holds with room even at that scale. */
#define LATENT_TOL 1e-3

static void test_sample(void **state)
{
    (void)state;
    if (!g_pipe) skip();
    size_t nl = (size_t)g_n * g_nper;
    float *lat = malloc(nl * sizeof(float));
    float *img = malloc((size_t)g_n * DA_IMG_FLOATS * sizeof(float));
    traj tr = {malloc((size_t)g_opts.steps * nl * sizeof(float)), 0};
    assert_int_equal(da_pipeline_generate(g_pipe, &g_opts, g_prompt, NULL, g_seed, g_n, record, &tr, img, lat), DA_OK);
    assert_int_equal(tr.calls, g_opts.steps);

    float *ref_steps = tu_ref(g_ref, "step_latents", (size_t)g_opts.steps * nl);
    float *ref_lat = tu_ref(g_ref, "latents", nl);
    float *ref_img = tu_ref(g_ref, "images", (size_t)g_n * DA_IMG_FLOATS);
    double worst_rel = 0.0;
    for (int s = 0; s < g_opts.steps; s++) {
        const float *r = ref_steps + (size_t)s * nl, *c = tr.x + (size_t)s * nl;
        size_t at = 0;
        double e = max_err(c, r, nl, &at), tol = LATENT_TOL;
        worst_rel = fmax(worst_rel, e / fmax(1.0, max_abs(r, nl)));
        if (!(e <= tol))
            fail_msg("latent after step %d: |C - torch| = %.3g at %zu (C %.9g, torch %.9g) > %.3g", s, e, at, c[at],
                     r[at], tol);
    }
    size_t at = 0;
    double e = max_err(lat, ref_lat, nl, &at);
    printf("sample parity (%s): final latent max |x| %.4g, max |C - torch| %.3g (tolerance %.3g); worst step "
           "error / max(1, max |x|) %.3g\n",
           meta("weights"), max_abs(ref_lat, nl), e, LATENT_TOL, worst_rel);
    tu_assert_bits("final latent = the last step's", lat, tr.x + (size_t)(g_opts.steps - 1) * nl, nl);
    if (!(e <= LATENT_TOL)) fail_msg("final latent: |C - torch| = %.3g at %zu > %g", e, at, LATENT_TOL);
    /* The image: the latent's difference passes through the VAE decoder
     * (x / scale_factor, then a conv net of Lipschitz constant ~1-10 for
     * these models) plus the decoder's own f32 rounding; 1e-3 on [0, 1]
     * pixels is a quarter of one 8-bit level (measured on the random
     * models: 1.1e-6). Clamped pixels are equal on both sides. */
    double ie = max_err(img, ref_img, (size_t)g_n * DA_IMG_FLOATS, &at);
    printf("sample parity: image max |C - torch| %.3g\n", ie);
    tu_assert_close("decoded images", img, ref_img, (size_t)g_n * DA_IMG_FLOATS, 1e-3, 0.0);
    free(ref_steps);
    free(ref_lat);
    free(ref_img);
    free(tr.x);
    free(lat);
    free(img);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_tokens_and_noise),
        cmocka_unit_test(test_text_features),
        cmocka_unit_test(test_sample),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
