/* Pipeline (src/pipeline): generation over a temp weights directory of tiny
 * randomly initialised models: determinism (runs, threads, batch), seeds,
 * CFG, the per-step callback (order, early stop, conditioning swaps), the
 * initial latent against PyTorch, a hand-written reference loop, PNG files
 * read back with stb_image, and the errors a user can cause. */
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image.h>

#define NPER (4 * 8 * 8)       /* latent values per image */
#define STEPS 4

static char g_dir[64];          /* the temp weights directory */
static da_text_encoder *g_text;
static da_vae *g_vae;
static da_unet *g_unet;
static da_pipeline *g_pipe;     /* created over the three models above */

/* ---- fixtures ---------------------------------------------------------------------- */

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Tiny models with random weights, saved by the C API into dir. */
static void write_models(const char *dir)
{
    char p[256];
    da_rng rng;
    da_rng_seed(&rng, 11);
    da_text_config tc = {.vocab_size = da_vocab_size(), .context = DA_MAX_TOKENS, .d_model = 32,
                         .n_layers = 1, .n_heads = 2, .mlp_ratio = 2, .proj_dim = 16};
    da_vae_config vc = da_vae_config_default();
    vc.ch[0] = vc.ch[1] = 8;
    vc.ch[2] = 16;
    vc.groups = 4;
    vc.scale_factor = 1.75f;   /* not 1: the decode must divide by it */
    da_unet_config uc = da_unet_config_default();
    uc.ch[0] = 16;
    uc.ch[1] = 32;
    uc.groups = 4;
    uc.n_heads = 2;
    uc.context_dim = 32;
    uc.time_freq_dim = 16;
    uc.time_dim = 32;
    g_text = da_text_encoder_create(&tc, 0);
    g_vae = da_vae_create(&vc, 0);
    g_unet = da_unet_create(&uc, 0);
    assert_non_null(g_text);
    assert_non_null(g_vae);
    assert_non_null(g_unet);
    da_text_encoder_init(g_text, &rng);
    da_vae_init(g_vae, &rng);
    da_unet_init(g_unet, &rng);
    path_in(p, sizeof p, dir, "text_encoder.json");
    assert_int_equal(da_text_config_save(&tc, p), DA_OK);
    path_in(p, sizeof p, dir, "text_encoder.safetensors");
    assert_int_equal(da_text_encoder_save(g_text, p), DA_OK);
    path_in(p, sizeof p, dir, "vae.json");
    assert_int_equal(da_vae_config_save(&vc, p), DA_OK);
    path_in(p, sizeof p, dir, "vae.safetensors");
    assert_int_equal(da_vae_save(g_vae, p), DA_OK);
    path_in(p, sizeof p, dir, "unet.json");
    assert_int_equal(da_unet_config_save(&uc, p), DA_OK);
    path_in(p, sizeof p, dir, "unet.safetensors");
    assert_int_equal(da_unet_save(g_unet, p), DA_OK);
    da_noise_config nc = da_noise_config_default();
    path_in(p, sizeof p, dir, "scheduler.json");
    assert_int_equal(da_noise_config_save(&nc, p), DA_OK);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_pipeline_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    write_models(g_dir);
    return da_pipeline_create(&g_pipe, g_text, g_vae, g_unet, NULL) == DA_OK ? 0 : -1;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    (void)state;
    da_pipeline_free(g_pipe);
    da_text_encoder_free(g_text);
    da_vae_free(g_vae);
    da_unet_free(g_unet);
    rm_dir(g_dir);
    return 0;
}

/* ---- helpers --------------------------------------------------------------------------- */

static da_sample_opts opts_of(da_sampler_kind k, int steps, float cfg, float eta)
{
    da_sample_opts o = da_sample_opts_default();
    o.sampler = k;
    o.steps = steps;
    o.cfg = cfg;
    o.eta = eta;
    return o;
}

typedef struct run {
    float lat[4 * NPER];
    float img[4 * DA_IMG_FLOATS];
} run;

static run *gen(da_pipeline *p, const da_sample_opts *o, const char *const *prompts, const char *neg,
                const uint64_t *seeds, int n)
{
    run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    da_status s = da_pipeline_generate(p, o, prompts, neg, seeds, n, NULL, NULL, r->img, r->lat);
    if (s != DA_OK) fail_msg("generate: %s", da_last_error());
    return r;
}

static int same_bits(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof *a); }

static const char *const P2[2] = {"a red circle above a blue square", "a small green triangle on black"};
static const uint64_t S2[2] = {5, 6};

/* ---- determinism ----------------------------------------------------------------------------- */

static void test_deterministic_and_in_range(void **state)
{
    (void)state;
    da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.0f);
    run *a = gen(g_pipe, &o, P2, NULL, S2, 2), *b = gen(g_pipe, &o, P2, NULL, S2, 2);
    tu_assert_bits("latents, run 1 vs run 2", a->lat, b->lat, 2 * NPER);
    tu_assert_bits("images, run 1 vs run 2", a->img, b->img, 2 * DA_IMG_FLOATS);
    for (int i = 0; i < 2 * DA_IMG_FLOATS; i++)
        if (!(a->img[i] >= 0.0f && a->img[i] <= 1.0f)) fail_msg("image value %d = %g outside [0, 1]", i, a->img[i]);
    for (int i = 0; i < 2 * NPER; i++)
        if (!isfinite(a->lat[i])) fail_msg("latent value %d = %g", i, a->lat[i]);
    free(a);
    free(b);
}

/* every sampler, CFG on, stochastic steps included: 1 and 2 threads give the same bits */
static void test_threads(void **state)
{
    (void)state;
    const da_sample_opts os[3] = {opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.7f), opts_of(DA_SAMPLER_DDPM, STEPS, 2.0f, 0.0f),
                                  opts_of(DA_SAMPLER_EULER, STEPS, 4.0f, 0.0f)};
    int saved = da_get_threads();
    for (int k = 0; k < 3; k++) {
        da_set_threads(1);
        run *a = gen(g_pipe, &os[k], P2, NULL, S2, 2);
        da_set_threads(2);
        run *b = gen(g_pipe, &os[k], P2, NULL, S2, 2);
        char what[96];
        snprintf(what, sizeof what, "%s latents, 1 vs 2 threads", da_sampler_name(os[k].sampler));
        tu_assert_bits(what, a->lat, b->lat, 2 * NPER);
        snprintf(what, sizeof what, "%s images, 1 vs 2 threads", da_sampler_name(os[k].sampler));
        tu_assert_bits(what, a->img, b->img, 2 * DA_IMG_FLOATS);
        free(a);
        free(b);
    }
    da_set_threads(saved);
}

/* Coarse threading cuts each model call's rows into one piece per thread
 * (da_run_pieces): 3 images over 3 threads cut the 6 guided rows into
 * pieces that part an image's uncond row from its cond row, and the 3
 * unguided rows into pieces of one. The cut must not change a bit. */
static void test_pieces(void **state)
{
    (void)state;
    static const char *const P3[3] = {"a red circle above a blue square", "a small green triangle on black",
                                      "a big yellow square"};
    static const uint64_t S3[3] = {5, 6, 7};
    const float ws[2] = {3.0f, 1.0f};
    int saved = da_get_threads();
    for (int k = 0; k < 2; k++) {
        da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, ws[k], 0.0f);
        da_set_threads(1);
        run *a = gen(g_pipe, &o, P3, NULL, S3, 3);
        da_set_threads(3);
        assert_int_equal(da_pieces(2 * 3), da_get_threads());   /* 1 in a build without OpenMP */
        run *b = gen(g_pipe, &o, P3, NULL, S3, 3);
        da_set_threads(2);
        run *c = gen(g_pipe, &o, P3, NULL, S3, 3);
        char what[96];
        snprintf(what, sizeof what, "cfg %g latents, 1 vs 3 threads", ws[k]);
        tu_assert_bits(what, a->lat, b->lat, 3 * NPER);
        snprintf(what, sizeof what, "cfg %g images, 1 vs 3 threads", ws[k]);
        tu_assert_bits(what, a->img, b->img, 3 * DA_IMG_FLOATS);
        snprintf(what, sizeof what, "cfg %g latents, 1 vs 2 threads", ws[k]);
        tu_assert_bits(what, a->lat, c->lat, 3 * NPER);
        free(a);
        free(b);
        free(c);
    }
    da_set_threads(saved);
}

static void test_seeds_differ(void **state)
{
    (void)state;
    da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.0f);
    const char *pp[2] = {P2[0], P2[0]};
    run *r = gen(g_pipe, &o, pp, NULL, S2, 2);
    assert_false(same_bits(r->lat, r->lat + NPER, NPER));
    assert_false(same_bits(r->img, r->img + DA_IMG_FLOATS, DA_IMG_FLOATS));
    free(r);
}

/* An image does not depend on its batch neighbours, with either GEMM
 * backend: every op treats the images of a batch independently, and every
 * GEMM runs each image as its own item (da_gemm_items), so image i of a
 * batch has exactly the bits it has alone (docs/pipeline.md, "Determinism").
 * Checked under the build's backend and under the portable one. */
static void assert_batch_close(const char *what, const float *got, const float *want, size_t n)
{
    tu_assert_bits(what, got, want, n);
}

static void check_batch_independent(void);

static void test_batch_independent(void **state)
{
    (void)state;
    const char *saved = da_gemm_backend();
    check_batch_independent();
    assert_int_equal(da_gemm_set_backend(strcmp(saved, "portable") ? "portable" : "openblas") == DA_OK ||
                         !strcmp(saved, "portable"), 1);
    if (strcmp(da_gemm_backend(), saved)) check_batch_independent(); /* the other backend, where built */
    assert_int_equal(da_gemm_set_backend(saved), DA_OK);
}

static void check_batch_independent(void)
{
    const da_sample_opts os[2] = {opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.5f), opts_of(DA_SAMPLER_DDPM, STEPS, 1.0f, 0.0f)};
    for (int k = 0; k < 2; k++) {
        run *both = gen(g_pipe, &os[k], P2, NULL, S2, 2);
        for (int i = 0; i < 2; i++) {
            run *one = gen(g_pipe, &os[k], P2 + i, NULL, S2 + i, 1);
            char what[96];
            snprintf(what, sizeof what, "%s, %s GEMM: latent %d of a batch of 2 vs alone", da_sampler_name(os[k].sampler),
                     da_gemm_backend(), i);
            assert_batch_close(what, both->lat + i * NPER, one->lat, NPER);
            snprintf(what, sizeof what, "%s, %s GEMM: image %d of a batch of 2 vs alone", da_sampler_name(os[k].sampler),
                     da_gemm_backend(), i);
            assert_batch_close(what, both->img + i * DA_IMG_FLOATS, one->img, DA_IMG_FLOATS);
            free(one);
        }
        free(both);
    }
}

/* ---- the initial latent ---------------------------------------------------------------------- */

typedef struct first_x {
    float x[NPER];
    float t;
} first_x;

static int grab_first(da_step_info *info, void *user)
{
    first_x *f = user;
    memcpy(f->x, info->x, sizeof f->x);
    f->t = info->timestep;
    return 1;   /* one step is enough */
}

/* da_initial_latent == torch.manual_seed(s); torch.randn(1, 4, 8, 8), and it is
 * what generate starts from (scaled by init_noise_sigma for Euler) */
static void test_initial_latent_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("pipeline");
    const uint64_t seeds[4] = {0, 7, 1234, 4294967301ull};
    for (int k = 0; k < 4; k++) {
        char name[64];
        snprintf(name, sizeof name, "latent.s%llu", (unsigned long long)seeds[k]);
        float *want = tu_ref(st, name, NPER);
        float got[NPER];
        da_initial_latent(seeds[k], got, NPER);
        tu_assert_bits(name, got, want, NPER);
        free(want);
    }
    float *want = tu_ref(st, "latent.s7", NPER);
    const char *p = "a red circle";
    uint64_t seed = 7;
    first_x f;
    da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.0f);
    assert_int_equal(da_pipeline_generate(g_pipe, &o, &p, NULL, &seed, 1, grab_first, &f, NULL, NULL), DA_OK);
    tu_assert_bits("ddim x_T vs torch.randn", f.x, want, NPER);
    o = opts_of(DA_SAMPLER_EULER, STEPS, 3.0f, 0.0f);
    assert_int_equal(da_pipeline_generate(g_pipe, &o, &p, NULL, &seed, 1, grab_first, &f, NULL, NULL), DA_OK);
    da_euler e;
    assert_int_equal(da_euler_init(&e, &g_pipe->sched, DA_PRED_EPSILON, STEPS), DA_OK);
    for (int i = 0; i < NPER; i++) want[i] *= e.init_noise_sigma;
    tu_assert_bits("euler x_T vs torch.randn * init_noise_sigma", f.x, want, NPER);
    assert_true(f.t == e.timesteps[0]);
    da_euler_free(&e);
    free(want);
    da_st_close(st);
}

/* ---- a hand-written reference loop ----------------------------------------------------------- */

/* The pipeline's composition written out with the public API, one image:
 * encode, DDIM loop, decode. With w != 1 the uncond and cond rows go through
 * the UNet in one call of 2 (batched, [uncond; cond]) or in two calls of 1. */
static void reference_ddim(const char *prompt, const char *negative, uint64_t seed, float w, int batched,
                           float *lat, float *img)
{
    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_tape_set_grad(&t, 0);
    int ids[2][DA_MAX_TOKENS];
    uint8_t keep[2][DA_MAX_TOKENS];
    float ctx[2][DA_MAX_TOKENS * 32];
    const char *texts[2] = {negative ? negative : "", prompt};
    for (int r = 0; r < 2; r++) {
        assert_int_equal(da_tokenize(texts[r], ids[r], keep[r], NULL), DA_OK);
        da_tape_reset(&t);
        da_tensor *f = da_text_encoder_forward(&t, g_text, ids[r], keep[r], 1, DA_MAX_TOKENS);
        memcpy(ctx[r], f->data, sizeof ctx[r]);
    }
    da_ddim_config dc = da_ddim_config_default();
    dc.clip_sample = 0;   /* latents are not bounded: the pipeline's default */
    da_ddim d;
    assert_int_equal(da_ddim_init(&d, &g_pipe->sched, &dc, STEPS), DA_OK);
    float x[NPER], eps[2][NPER];
    da_initial_latent(seed, x, NPER);
    for (int i = 0; i < STEPS; i++) {
        float ts[2] = {(float)d.timesteps[i], (float)d.timesteps[i]};
        if (w != 1.0f && batched) {
            float x2[2 * NPER];
            memcpy(x2, x, sizeof x);
            memcpy(x2 + NPER, x, sizeof x);
            da_tape_reset(&t);
            int xs[4] = {2, 4, 8, 8}, cs[3] = {2, DA_MAX_TOKENS, 32};
            da_tensor *e = da_unet_forward(&t, g_unet, da_leaf(&t, x2, NULL, 4, xs), ts, da_leaf(&t, ctx[0], NULL, 3, cs),
                                           keep[0]);
            memcpy(eps, e->data, sizeof eps);
        }
        for (int r = w != 1.0f ? 0 : 1; r < 2 && !(w != 1.0f && batched); r++) {
            da_tape_reset(&t);
            int xs[4] = {1, 4, 8, 8}, cs[3] = {1, DA_MAX_TOKENS, 32};
            da_tensor *e = da_unet_forward(&t, g_unet, da_leaf(&t, x, NULL, 4, xs), ts, da_leaf(&t, ctx[r], NULL, 3, cs),
                                           keep[r]);
            memcpy(eps[r], e->data, sizeof eps[r]);
        }
        if (w != 1.0f) da_cfg_combine(eps[1], eps[0], eps[1], w, NPER);
        assert_int_equal(da_ddim_step(&d, x, NULL, eps[1], d.timesteps[i], x, NULL, NPER), DA_OK);
    }
    memcpy(lat, x, sizeof x);
    da_tape_reset(&t);
    int zs[4] = {1, 4, 8, 8};
    float z[NPER];
    for (int i = 0; i < NPER; i++) z[i] = x[i] / g_vae->cfg.scale_factor;
    da_tensor *im = da_vae_decode(&t, g_vae, da_leaf(&t, z, NULL, 4, zs));
    for (int i = 0; i < DA_IMG_FLOATS; i++) img[i] = fminf(fmaxf((im->data[i] + 1.0f) * 0.5f, 0.0f), 1.0f);
    da_ddim_free(&d);
    da_tape_free(&t);
}

/* w = 1 is the conditional path alone (the negative prompt is never used);
 * w = 3 is eps_u + w (eps_c - eps_u) from one UNet call over [uncond; cond],
 * and matches two separate calls (see the batch test above) */
static void test_cfg_against_reference(void **state)
{
    (void)state;
    float lat[NPER], img[DA_IMG_FLOATS];
    const float ws[2] = {1.0f, 3.0f};
    for (int k = 0; k < 2; k++) {
        da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, ws[k], 0.0f);
        run *a = gen(g_pipe, &o, P2, "blue", S2, 1);
        reference_ddim(P2[0], "blue", S2[0], ws[k], 1, lat, img);
        char what[64];
        snprintf(what, sizeof what, "latent vs reference loop, w = %g", ws[k]);
        tu_assert_bits(what, a->lat, lat, NPER);
        snprintf(what, sizeof what, "image vs reference loop, w = %g", ws[k]);
        tu_assert_bits(what, a->img, img, DA_IMG_FLOATS);
        if (ws[k] != 1.0f) {
            reference_ddim(P2[0], "blue", S2[0], ws[k], 0, lat, img);
            assert_batch_close("latent vs reference with separate uncond/cond calls", a->lat, lat, NPER);
        }
        run *b = gen(g_pipe, &o, P2, "red circle", S2, 1);
        if (ws[k] == 1.0f) tu_assert_bits("w = 1 ignores the negative prompt", a->lat, b->lat, NPER);
        else assert_false(same_bits(a->lat, b->lat, NPER));   /* w != 1 uses it */
        free(a);
        free(b);
    }
    /* no negative prompt = the empty prompt */
    da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.0f);
    run *a = gen(g_pipe, &o, P2, NULL, S2, 1), *b = gen(g_pipe, &o, P2, DA_UNCOND_PROMPT, S2, 1);
    tu_assert_bits("negative NULL vs DA_UNCOND_PROMPT", a->lat, b->lat, NPER);
    free(a);
    free(b);
}

/* ---- the callback ---------------------------------------------------------------------------- */

typedef struct cb_log {
    int calls, stop_at, swap_at;
    int steps[16];
    float ts[16];
    float x_prev[16][2 * NPER], x[16][2 * NPER], x0[16][2 * NPER];
    int ids[16][DA_MAX_TOKENS];
    const char *const *swap_prompts;
    const int *swap_ids;
} cb_log;

static int logger(da_step_info *info, void *user)
{
    cb_log *l = user;
    int k = l->calls++;
    assert_true(k < 16);
    assert_int_equal(info->batch * info->channels * info->height * info->width, info->batch * NPER);
    l->steps[k] = info->step;
    l->ts[k] = info->timestep;
    size_t n = (size_t)info->batch * NPER;
    memcpy(l->x[k], info->x, n * sizeof(float));
    memcpy(l->x_prev[k], info->x_prev, n * sizeof(float));
    memcpy(l->x0[k], info->x0, n * sizeof(float));
    memcpy(l->ids[k], info->ids, sizeof l->ids[k]);
    if (info->step == l->swap_at) {
        info->new_prompts = l->swap_prompts;
        info->new_ids = l->swap_ids;
    }
    return info->step == l->stop_at;
}

static void test_callback_order_and_stop(void **state)
{
    (void)state;
    const int steps = 5;
    da_sample_opts o = opts_of(DA_SAMPLER_DDIM, steps, 3.0f, 0.0f);
    cb_log *l = calloc(1, sizeof *l);
    l->stop_at = l->swap_at = -1;
    float lat[2 * NPER];
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, NULL, S2, 2, logger, l, NULL, lat), DA_OK);
    assert_int_equal(l->calls, steps);
    assert_int_equal(g_pipe->steps_done, steps);
    int ts[5];
    assert_int_equal(da_timesteps(ts, steps, 1000, DA_SPACING_LEADING, 0), DA_OK);
    int want_ids[DA_MAX_TOKENS];
    uint8_t keep[DA_MAX_TOKENS];
    da_tokenize(P2[0], want_ids, keep, NULL);
    for (int k = 0; k < steps; k++) {
        assert_int_equal(l->steps[k], k);
        assert_true(l->ts[k] == (float)ts[k]);
        assert_memory_equal(l->ids[k], want_ids, sizeof want_ids);
        if (k) tu_assert_bits("x of step k = x_prev of step k-1", l->x[k], l->x_prev[k - 1], 2 * NPER);
    }
    tu_assert_bits("final latent = x_prev of the last step", lat, l->x_prev[steps - 1], 2 * NPER);

    /* stop after step 2: three calls, the outputs come from step 2's x0 */
    cb_log *s = calloc(1, sizeof *s);
    s->stop_at = 2;
    s->swap_at = -1;
    float img[2 * DA_IMG_FLOATS], img0[2 * DA_IMG_FLOATS];
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, NULL, S2, 2, logger, s, img, lat), DA_OK);
    assert_int_equal(s->calls, 3);
    assert_int_equal(g_pipe->steps_done, 3);
    tu_assert_bits("stopped: steps before the stop are unchanged", s->x_prev[2], l->x_prev[2], 2 * NPER);
    tu_assert_bits("stopped: latent = the last x0", lat, s->x0[2], 2 * NPER);
    assert_int_equal(da_pipeline_decode(g_pipe, s->x0[2], 2, img0), DA_OK);
    tu_assert_bits("stopped: image = decode(last x0)", img, img0, 2 * DA_IMG_FLOATS);
    free(l);
    free(s);
}

static void swap_run(const da_sample_opts *o, const char *const *prompts, const int *ids, int at, float *lat,
                     cb_log **log_out)
{
    cb_log *l = calloc(1, sizeof *l);
    l->stop_at = -1;
    l->swap_at = at;
    l->swap_prompts = prompts;
    l->swap_ids = ids;
    da_status s = da_pipeline_generate(g_pipe, o, P2, NULL, S2, 2, logger, l, NULL, lat);
    if (s != DA_OK) fail_msg("swap run: %s", da_last_error());
    *log_out = l;
}

static void test_callback_swap(void **state)
{
    (void)state;
    da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.0f);
    float base[2 * NPER], same[2 * NPER], other[2 * NPER], viaids[2 * NPER];
    cb_log *lb, *ls, *lo, *li;
    swap_run(&o, NULL, NULL, -1, base, &lb);
    const char *same_p[2] = {P2[0], NULL};                 /* NULL keeps row 1 */
    swap_run(&o, same_p, NULL, 1, same, &ls);
    tu_assert_bits("swap to the same prompt changes nothing", same, base, 2 * NPER);

    const char *other_p[2] = {"a yellow square", NULL};
    swap_run(&o, other_p, NULL, 1, other, &lo);
    tu_assert_bits("steps up to the swap are unchanged", lo->x_prev[1], lb->x_prev[1], 2 * NPER);
    assert_false(same_bits(other, base, NPER));             /* image 0 changed */
    tu_assert_bits("image 1 (kept) is unchanged", other + NPER, base + NPER, NPER);
    int want[DA_MAX_TOKENS];
    uint8_t keep[DA_MAX_TOKENS];
    da_tokenize("a yellow square", want, keep, NULL);
    assert_memory_equal(lo->ids[2], want, sizeof want);     /* info->ids shows the new prompt */

    /* the same swap as ids */
    int ids[2 * DA_MAX_TOKENS];
    memcpy(ids, want, sizeof want);
    da_tokenize(P2[1], ids + DA_MAX_TOKENS, keep, NULL);
    swap_run(&o, NULL, ids, 1, viaids, &li);
    tu_assert_bits("swap by ids == swap by text", viaids, other, 2 * NPER);
    free(lb);
    free(ls);
    free(lo);
    free(li);

    /* a bad new prompt fails the run and names the word */
    cb_log *bad = calloc(1, sizeof *bad);
    const char *bad_p[2] = {"a red circel", NULL};
    bad->stop_at = -1;
    bad->swap_at = 0;
    bad->swap_prompts = bad_p;
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, NULL, S2, 2, logger, bad, NULL, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "circel"));
    /* ids without EOS */
    int no_eos[2 * DA_MAX_TOKENS] = {DA_TOK_BOS, 9, 17};
    memcpy(no_eos + DA_MAX_TOKENS, want, sizeof want);
    memset(bad, 0, sizeof *bad);
    bad->stop_at = -1;
    bad->swap_ids = no_eos;
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, NULL, S2, 2, logger, bad, NULL, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "row 0"));
    free(bad);
}

/* ---- loading ------------------------------------------------------------------------------------ */

/* the directory loader reads all models, the scale factor and scheduler.json */
static void test_load_equals_create(void **state)
{
    (void)state;
    da_pipeline *p;
    if (da_pipeline_load(&p, g_dir, NULL) != DA_OK) fail_msg("load: %s", da_last_error());
    assert_true(p->vae->cfg.scale_factor == 1.75f);
    da_sample_opts o = opts_of(DA_SAMPLER_DDPM, STEPS, 3.0f, 0.0f);
    run *a = gen(p, &o, P2, NULL, S2, 2), *b = gen(g_pipe, &o, P2, NULL, S2, 2);
    tu_assert_bits("loaded vs in-memory pipeline", a->img, b->img, 2 * DA_IMG_FLOATS);
    free(a);
    free(b);
    da_pipeline_free(p);
}

static void test_weights_dir(void **state)
{
    (void)state;
    unsetenv("DALIGN_WEIGHTS");
    assert_string_equal(da_weights_dir(NULL), "weights");
    setenv("DALIGN_WEIGHTS", "/x/w", 1);
    assert_string_equal(da_weights_dir(NULL), "/x/w");
    assert_string_equal(da_weights_dir("mine"), "mine");
    setenv("DALIGN_WEIGHTS", "", 1);
    assert_string_equal(da_weights_dir(NULL), "weights");
    unsetenv("DALIGN_WEIGHTS");
}

static void test_noise_config_roundtrip(void **state)
{
    (void)state;
    char p[256];
    path_in(p, sizeof p, g_dir, "sched_rt.json");
    da_noise_config c = da_noise_config_default();
    c.n_train = 500;
    c.beta_schedule = DA_BETA_SCALED_LINEAR;
    c.beta_start = 0.00085f;
    c.beta_end = 0.012f;
    c.prediction = DA_PRED_V;
    c.spacing = DA_SPACING_TRAILING;
    c.steps_offset = 1;
    c.clip_sample = 1;
    c.clip_sample_range = 2.5f;
    c.set_alpha_to_one = 0;
    assert_int_equal(da_noise_config_save(&c, p), DA_OK);
    da_noise_config d = da_noise_config_default();
    assert_int_equal(da_noise_config_load(&d, p), DA_OK);
    assert_memory_equal(&c, &d, sizeof c);
    /* absent keys keep what was passed in; unknown keys and bad values fail */
    FILE *f = fopen(p, "w");
    fputs("{\"num_train_timesteps\": 200}", f);
    fclose(f);
    d = da_noise_config_default();
    assert_int_equal(da_noise_config_load(&d, p), DA_OK);
    assert_int_equal(d.n_train, 200);
    assert_true(d.beta_end == 0.02f);
    const char *bad[3] = {"{\"beta_scedule\": \"linear\"}", "{\"beta_schedule\": \"cosine\"}", "{\"clip_sample\": 1}"};
    const char *word[3] = {"beta_scedule", "beta_schedule", "clip_sample"};
    for (int k = 0; k < 3; k++) {
        f = fopen(p, "w");
        fputs(bad[k], f);
        fclose(f);
        assert_int_equal(da_noise_config_load(&d, p), DA_ERR_FORMAT);
        assert_non_null(strstr(da_last_error(), word[k]));
    }
    unlink(p);
}

/* ---- errors ---------------------------------------------------------------------------------------- */

static void copy_file(const char *from, const char *to, long truncate_to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    int c;
    long k = 0;
    while ((c = fgetc(a)) != EOF && (truncate_to < 0 || k++ < truncate_to)) fputc(c, b);
    fclose(a);
    fclose(b);
}

static void expect_load_error(const char *dir, da_status want, const char *needle)
{
    da_pipeline *p = (da_pipeline *)1;
    assert_int_equal(da_pipeline_load(&p, dir, NULL), want);
    assert_null(p);
    if (!strstr(da_last_error(), needle)) fail_msg("message '%s' lacks '%s'", da_last_error(), needle);
}

static void test_errors_weights(void **state)
{
    (void)state;
    expect_load_error("/nonexistent/dalign-weights", DA_ERR_IO, "/nonexistent/dalign-weights");
    char dir[64], from[256], to[256];
    snprintf(dir, sizeof dir, "/tmp/da_test_pipeline_bad_XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *files[] = {"text_encoder.json", "text_encoder.safetensors", "vae.json", "vae.safetensors", "unet.json"};
    for (int i = 0; i < 5; i++) {
        path_in(from, sizeof from, g_dir, files[i]);
        path_in(to, sizeof to, dir, files[i]);
        copy_file(from, to, -1);
    }
    expect_load_error(dir, DA_ERR_IO, "unet.safetensors");           /* missing file */
    assert_non_null(strstr(da_last_error(), "UNet weights"));          /* named before its loader runs */
    path_in(from, sizeof from, g_dir, "unet.safetensors");
    path_in(to, sizeof to, dir, "unet.safetensors");
    copy_file(from, to, 1000);                                       /* truncated: corrupt */
    expect_load_error(dir, DA_ERR_FORMAT, "unet.safetensors");
    /* the parser names nothing: the path goes in front, once */
    if (strncmp(da_last_error(), to, strlen(to)) || strstr(da_last_error() + strlen(to), to))
        fail_msg("message '%s' does not start with '%s' (once)", da_last_error(), to);
    copy_file(from, to, -1);
    path_in(to, sizeof to, dir, "scheduler.json");
    FILE *f = fopen(to, "w");
    fputs("{\"prediction_type\": \"eps\"}", f);
    fclose(f);
    expect_load_error(dir, DA_ERR_FORMAT, "prediction_type");
    unlink(to);
    da_pipeline *p;
    assert_int_equal(da_pipeline_load(&p, dir, NULL), DA_OK);         /* scheduler.json is optional */
    da_pipeline_free(p);
    p = (da_pipeline *)1;
    assert_int_equal(da_pipeline_load(&p, dir, "unet-b"), DA_ERR_IO);   /* --unet NAME that is not there */
    assert_null(p);
    assert_non_null(strstr(da_last_error(), "unet-b.json"));
    rm_dir(dir);
}

/* Non-finite latents fail the run, naming the step and the image, instead
 * of decoding to a black PNG: a guidance weight that overflows eps, and a
 * NaN weight of the UNet (issue 14). */
static void test_nonfinite_latents(void **state)
{
    (void)state;
    uint64_t seeds[2] = {1, 2};
    float img[2 * DA_IMG_FLOATS];
    da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, 3e38f, 0.0f);
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, NULL, seeds, 2, NULL, NULL, img, NULL), DA_ERR_RANGE);
    assert_non_null(strstr(da_last_error(), "step 1 of"));
    assert_non_null(strstr(da_last_error(), "not finite"));
    o = opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.0f);
    float *w = g_unet->params.data;
    float keep = w[0];
    w[0] = NAN;
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, NULL, seeds, 2, NULL, NULL, img, NULL), DA_ERR_RANGE);
    assert_non_null(strstr(da_last_error(), "the latent of image 0 is not finite"));
    w[0] = keep;
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, NULL, seeds, 2, NULL, NULL, img, NULL), DA_OK);
}

static void test_errors_inputs(void **state)
{
    (void)state;
    da_sample_opts o = opts_of(DA_SAMPLER_DDIM, STEPS, 3.0f, 0.0f);
    const char *bad = "a purpel circle";
    uint64_t seed = 1;
    assert_int_equal(da_pipeline_generate(g_pipe, &o, &bad, NULL, &seed, 1, NULL, NULL, NULL, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "purpel"));
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, "no such wordz", &seed, 1, NULL, NULL, NULL, NULL),
                     DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "wordz"));
    char longp[400] = "a";
    for (int i = 0; i < 30; i++) strcat(longp, " red");
    const char *lp = longp;
    assert_int_equal(da_pipeline_generate(g_pipe, &o, &lp, NULL, &seed, 1, NULL, NULL, NULL, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "too long"));
    da_sample_opts e = opts_of(DA_SAMPLER_EULER, STEPS, 3.0f, 0.5f);    /* eta is DDIM's */
    assert_int_equal(da_pipeline_generate(g_pipe, &e, P2, NULL, &seed, 1, NULL, NULL, NULL, NULL), DA_ERR_INVALID);
    e = opts_of(DA_SAMPLER_DDIM, 0, 3.0f, 0.0f);
    assert_int_equal(da_pipeline_generate(g_pipe, &e, P2, NULL, &seed, 1, NULL, NULL, NULL, NULL), DA_ERR_INVALID);
    e = opts_of(DA_SAMPLER_DDIM, STEPS, NAN, 0.0f);
    assert_int_equal(da_pipeline_generate(g_pipe, &e, P2, NULL, &seed, 1, NULL, NULL, NULL, NULL), DA_ERR_INVALID);
    assert_int_equal(da_pipeline_generate(g_pipe, &o, P2, NULL, &seed, 0, NULL, NULL, NULL, NULL), DA_ERR_INVALID);
    da_sampler_kind k;
    assert_int_equal(da_sampler_parse("euler", &k), DA_OK);
    assert_int_equal(k, DA_SAMPLER_EULER);
    assert_int_equal(da_sampler_parse("dpm", &k), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "dpm"));
    /* models that do not fit together */
    da_unet_config uc = g_unet->cfg;
    uc.context_dim = 64;
    da_unet *u = da_unet_create(&uc, 0);
    da_pipeline *p = (da_pipeline *)1;
    assert_int_equal(da_pipeline_create(&p, g_text, g_vae, u, NULL), DA_ERR_INVALID);
    assert_null(p);
    assert_non_null(strstr(da_last_error(), "context_dim"));
    da_unet_free(u);
}

/* ---- images ------------------------------------------------------------------------------------------ */

static void test_grid_and_upscale(void **state)
{
    (void)state;
    /* 3 tiles of 1 x 2 pixels, 2 columns, gap 1: a 3 x 5 grid */
    uint8_t tiles[3 * 2 * 3], out[3 * 5 * 3];
    for (int i = 0; i < 18; i++) tiles[i] = (uint8_t)(10 + i);
    const uint8_t fill[3] = {1, 2, 3};
    int gh, gw;
    da_grid_size(3, 2, 1, 2, 1, &gh, &gw);
    assert_int_equal(gh, 3);
    assert_int_equal(gw, 5);
    da_rgb8_grid(out, tiles, 3, 2, 1, 2, 1, fill);
    const int tile_at[3][5] = {{0, 0, -1, 1, 1}, {-1, -1, -1, -1, -1}, {2, 2, -1, -1, -1}};
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++)
            for (int c = 0; c < 3; c++) {
                int k = tile_at[y][x];
                uint8_t want = k < 0 ? fill[c] : tiles[3 * (2 * k + (x % 3)) + c];
                assert_int_equal(out[3 * (y * 5 + x) + c], want);
            }
    /* upscale x3 of a 2 x 2 image: pixel (y, x) of the output is input (y/3, x/3) */
    uint8_t in[2 * 2 * 3], big[6 * 6 * 3];
    for (int i = 0; i < 12; i++) in[i] = (uint8_t)(i * 7);
    da_rgb8_upscale(big, in, 2, 2, 3);
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 6; x++)
            for (int c = 0; c < 3; c++) assert_int_equal(big[3 * (y * 6 + x) + c], in[3 * ((y / 3) * 2 + x / 3) + c]);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* generated images -> PNG (grid of 2 columns, x2) -> stbi_load -> the same bytes */
static void test_png_roundtrip(void **state)
{
    (void)state;
    const char *pp[3] = {P2[0], P2[1], "a cyan circle"};
    const uint64_t seeds[3] = {1, 2, 3};
    da_sample_opts o = opts_of(DA_SAMPLER_EULER, STEPS, 3.0f, 0.0f);
    run *r = gen(g_pipe, &o, pp, NULL, seeds, 3);
    char path[256];
    path_in(path, sizeof path, g_dir, "grid.png");
    int before = count_files(g_dir);
    assert_int_equal(da_png_save_images(path, r->img, 3, 2, 2), DA_OK);
    assert_int_equal(count_files(g_dir), before + 1);   /* no temp file left behind */
    int w, h, comp;
    uint8_t *px = stbi_load(path, &w, &h, &comp, 3);
    assert_non_null(px);
    assert_int_equal(comp, 3);
    assert_int_equal(w, 2 * (2 * DA_IMG + 1));
    assert_int_equal(h, 2 * (2 * DA_IMG + 1));
    uint8_t rgb[DA_IMG * DA_IMG * 3];
    for (int k = 0; k < 3; k++) {
        da_image_to_rgb8(r->img + k * DA_IMG_FLOATS, DA_IMG, DA_IMG, rgb);
        int y0 = 2 * (k / 2) * (DA_IMG + 1), x0 = 2 * (k % 2) * (DA_IMG + 1);
        for (int y = 0; y < 2 * DA_IMG; y++)
            for (int x = 0; x < 2 * DA_IMG; x++)
                for (int c = 0; c < 3; c++)
                    if (px[3 * ((y0 + y) * w + x0 + x) + c] != rgb[3 * ((y / 2) * DA_IMG + x / 2) + c])
                        fail_msg("tile %d pixel (%d, %d) channel %d differs", k, y, x, c);
    }
    assert_int_equal(px[3 * (DA_IMG * 2 * w + 5)], 64);    /* a gap row holds the fill colour */
    stbi_image_free(px);
    /* one image, no grid */
    assert_int_equal(da_png_save_images(path, r->img, 1, 0, 1), DA_OK);
    px = stbi_load(path, &w, &h, &comp, 3);
    assert_non_null(px);
    assert_int_equal(w, DA_IMG);
    da_image_to_rgb8(r->img, DA_IMG, DA_IMG, rgb);
    assert_memory_equal(px, rgb, sizeof rgb);
    stbi_image_free(px);
    unlink(path);
    assert_int_equal(da_png_save_images("/nonexistent/dir/x.png", r->img, 1, 0, 1), DA_ERR_IO);
    assert_non_null(strstr(da_last_error(), "/nonexistent/dir/x.png"));
    assert_int_equal(da_png_save_images(path, r->img, 1, 0, 0), DA_ERR_INVALID);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_and_in_range),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_seeds_differ),
        cmocka_unit_test(test_batch_independent),
        cmocka_unit_test(test_initial_latent_torch),
        cmocka_unit_test(test_cfg_against_reference),
        cmocka_unit_test(test_callback_order_and_stop),
        cmocka_unit_test(test_callback_swap),
        cmocka_unit_test(test_load_equals_create),
        cmocka_unit_test(test_weights_dir),
        cmocka_unit_test(test_noise_config_roundtrip),
        cmocka_unit_test(test_errors_weights),
        cmocka_unit_test(test_errors_inputs),
        cmocka_unit_test(test_nonfinite_latents),
        cmocka_unit_test(test_grid_and_upscale),
        cmocka_unit_test(test_png_roundtrip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
