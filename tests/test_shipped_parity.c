/* Model parity of the SHIPPED weights (issue 3, item 8): the C text encoder,
 * CLIP image tower, VAE and UNets of the weights directory recorded in
 * tests/oracle/shipped_parity.safetensors against PyTorch modules that
 * loaded the same files (tests/oracle/shipped_parity.py, which documents
 * each model's inputs and loss). Per model: the outputs, the gradients of
 * the inputs, a summary of EVERY parameter gradient (its 2-norm and its dot
 * product with a fixed Gaussian probe) and the full gradients of the small
 * tensors (1-D parameters and the output layer), which localise an error.
 *
 * The reference names its directory; after new weights land, rerunning the
 * script retargets this suite without a code change. A missing directory is
 * a failure, never a skip. Weights that changed since the reference was made
 * fail with "reference is stale" (checked first, so stale weights never show
 * up as parity errors): the file sizes must equal the recorded ones, and each
 * tensor's fingerprint sum(w * r) (r its probe, below) must match. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REF_FILE "tests/oracle/shipped_parity.safetensors"
#define RERUN "/usr/bin/python3 tests/oracle/shipped_parity.py --weights"

/* Tolerances, relative to each tensor's scale (max|ref| for outputs and full
 * gradients, the 2-norm for the summaries below). Both sides are f32 with
 * different summation orders (OpenBLAS or the portable GEMM vs PyTorch's
 * kernels): errors are a few ulp of the largest terms of each sum, grown by
 * depth. The suites on the reduced random models measured ~1e-6 (text, CLIP)
 * and ~5e-6 (VAE, UNet) and allow 2e-5 and 1e-4. Measured worst here, on
 * build/weights-smoke (20 steps) and on the final text encoder, CLIP and VAE
 * of the current `make weights` run:
 *   text_encoder 3e-6, UNet and unet-b 5e-6: as the reduced suites;
 *   CLIP 2.2e-5 (final) - 6.9e-5 (smoke), VAE 1.2e-4 (final) - 2.9e-4
 *   (smoke): on 32x32 feature maps GroupNorm sums groups of 4096 values,
 *   which vec_norm.c adds up in f32 accumulators (mean, variance, and backward's sum(g), sum(g xhat),
 *   dgamma, dbeta); PyTorch's f32 result is within 3e-6 of float64. With
 *   double accumulators in those four loops (tried in a scratch copy) the
 *   reference of the final CLIP and VAE gives 7e-7 and 4e-6.
 * A wrong op, layout, mask or tensor gives errors of 1e-2 and above, so
 * every bound below leaves a margin of 3x or more to the measured noise
 * and 10x or more to a real error. */
#define REL_TEXT 1e-4
#define REL_CLIP 3e-4
#define REL_VAE 1e-3
#define REL_UNET 2e-4

/* Gradient summaries. For a parameter with reference gradient g and C
 * gradient g + e:
 *  - the 2-norm: | ||g + e|| - ||g|| | <= ||e|| (triangle inequality), so the
 *    norms agree to within the gradient's error in 2-norm;
 *  - the probe p = g . r with r ~ N(0, I) drawn independently of e:
 *    e . r ~ N(0, ||e||^2) (||r|| ~ sqrt(numel), so |e . r| is of order
 *    ||e|| ||r|| / sqrt(numel) = ||e||), |e . r| < 6 ||e|| but with
 *    probability 2e-9. The probe catches what the norm cannot (permuted or
 *    sign-flipped elements keep the norm).
 * Both are compared against rel * scale with scale = ||g||: the gradient's
 * relative error in 2-norm, which for f32 rounding noise is of the same order
 * as the elementwise error relative to max|g| (the existing suites' measure);
 * the probe difference is divided by PROBE_K = 6 first. A floor keeps
 * gradients that are ~0 in exact arithmetic (the text encoder's k_proj.bias:
 * softmax ignores a shift shared by a row of scores) from dividing rounding
 * noise by rounding noise: scale = max(||g||, FLOOR * sqrt(numel) * the
 * largest RMS of a gradient of the model): the 2-norm of a tensor whose RMS
 * is 1e-3 of the largest (tu_compare_params's floor is 1e-2 of the largest
 * element; without a floor only k_proj.bias exceeds 2e-6 here). */
#define PROBE_K 6.0
#define FLOOR 1e-3
#define FLOOR_FULL 1e-2
/* The weight fingerprint sum(w * r) is a float64 sum of the same f32 values
 * on both sides, stored as f32 (6e-8 relative): 1e-6 of ||w|| + |ref| is
 * far above that and far below any retraining step. */
#define STALE_REL 1e-6

static da_safetensors *g_ref;
static const char *g_dir;

static const char *meta(const char *key)
{
    const char *v = da_st_meta_get(g_ref, key);
    if (!v) fail_msg("%s: no metadata '%s' (regenerate it: %s DIR)", REF_FILE, key, RERUN);
    return v;
}

static int setup(void **state)
{
    (void)state;
    da_st_open(REF_FILE, &g_ref);
    /* a missing file fails every test below (no group setup error: cmocka
     * would report it without naming the cause) */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    da_st_close(g_ref);
    return 0;
}

/* The reference and the model files of `model` (NAME.json, NAME.safetensors)
 * in the recorded directory, with the recorded sizes. */
static void weights_paths(const char *model, char *json, char *st, size_t cap)
{
    if (!g_ref) fail_msg("cannot read %s: %s (run from the repository root)", REF_FILE, da_last_error());
    g_dir = meta("weights");
    const char *ext[2] = {".json", ".safetensors"};
    char *out[2] = {json, st};
    for (int i = 0; i < 2; i++) {
        snprintf(out[i], cap, "%s/%s%s", g_dir, model, ext[i]);
        struct stat sb;
        if (stat(out[i], &sb))
            fail_msg("the reference was made from '%s', but %s is missing: restore it, or regenerate the "
                     "reference with %s DIR",
                     g_dir, out[i], RERUN);
        char key[128];
        snprintf(key, sizeof key, "size.%s%s", model, ext[i]);
        long long want = strtoll(meta(key), NULL, 10);
        if ((long long)sb.st_size != want)
            fail_msg("reference is stale: %s has %lld bytes, the reference was made from %lld: rerun %s %s",
                     out[i], (long long)sb.st_size, want, RERUN, g_dir);
    }
}

static double max_err(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= m)) m = isnan(e) ? INFINITY : e;
    }
    return m;
}

typedef struct report {
    double out, stat, full;           /* worst err / scale of each kind */
    char out_at[160], stat_at[200], full_at[200];
} report;

/* an output (or input gradient) against M.<name>: |err| <= rel * max|ref| */
static void check_out(report *rp, const char *model, const char *name, const float *got, size_t n, double rel)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", model, name);
    float *want = tu_ref(g_ref, key, n);
    double scale = tu_max_abs(want, n), err = max_err(got, want, n);
    double ratio = scale > 0 ? err / scale : (err > 0 ? INFINITY : 0.0);
    if (!(ratio <= rp->out)) {
        rp->out = ratio;
        snprintf(rp->out_at, sizeof rp->out_at, "%s", name);
    }
    free(want);
    tu_check_scaled(g_ref, key, got, n, rel, 0.0);
}

static uint32_t fnv1a32(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Per parameter of p: the reference's M.stat.<name> into ref[3e..3e+2] and
 * the same sums of the C model into mine (float64, the probe r drawn with
 * da_randn as the script documents), ||w|| into wnorm. The tables must have
 * the same tensors. */
static void summarise(const char *model, const da_params *p, double *ref, double *mine, double *wnorm)
{
    char prefix[64], key[300];
    snprintf(prefix, sizeof prefix, "%s.stat.", model);
    int n_ref = 0;
    for (int i = 0; i < g_ref->n_tensors; i++) n_ref += !strncmp(g_ref->tensors[i].name, prefix, strlen(prefix));
    if (n_ref != p->n)
        fail_msg("reference is stale: %s has %d parameter tensors, the reference %d: rerun %s %s", model, p->n,
                 n_ref, RERUN, g_dir);
    size_t biggest = 1;
    for (int e = 0; e < p->n; e++) {
        size_t n = da_shape_size(p->ndim[e], p->shape[e]);
        if (n > biggest) biggest = n;
    }
    float *r = malloc(biggest * sizeof(float));
    for (int e = 0; e < p->n; e++) {
        snprintf(key, sizeof key, "%s%s", prefix, p->names[e]);
        const da_st_tensor *t = da_st_find(g_ref, key);
        if (!t) fail_msg("reference is stale: it has no %s (another architecture?): rerun %s %s", key, RERUN, g_dir);
        float st3[3];
        assert_int_equal(t->numel, 3);
        da_st_to_f32(g_ref, t, st3);
        size_t n = da_shape_size(p->ndim[e], p->shape[e]);
        da_rng rng;
        da_rng_seed(&rng, fnv1a32(p->names[e]));
        da_randn(&rng, r, n);
        const float *w = p->data + p->offset[e], *g = p->grad + p->offset[e];
        double ss = 0.0, gr = 0.0, wr = 0.0, ww = 0.0;
        for (size_t i = 0; i < n; i++) {
            ss += (double)g[i] * g[i];
            gr += (double)g[i] * r[i];
            wr += (double)w[i] * r[i];
            ww += (double)w[i] * w[i];
        }
        for (int k = 0; k < 3; k++) ref[3 * e + k] = st3[k];
        mine[3 * e] = ss;
        mine[3 * e + 1] = gr;
        mine[3 * e + 2] = wr;
        wnorm[e] = sqrt(ww);
    }
    free(r);
}

/* Right after loading, before any forward: the weights as the C code loaded
 * them against the fingerprints sum(w * r) of the reference's weights, so
 * stale weights never show up as parity errors. */
static void check_fingerprints(const char *model, const da_params *p)
{
    double *ref = malloc(sizeof(double) * 3 * (size_t)p->n), *mine = malloc(sizeof(double) * 3 * (size_t)p->n);
    double *wnorm = malloc(sizeof(double) * (size_t)p->n);
    summarise(model, p, ref, mine, wnorm);
    for (int e = 0; e < p->n; e++) {
        double want = ref[3 * e + 2], got = mine[3 * e + 2];
        if (!(fabs(got - want) <= STALE_REL * (fabs(want) + wnorm[e])))
            fail_msg("reference is stale: tensor %s of %s/%s.safetensors, as loaded, is not the one the reference "
                     "was made from (fingerprint sum(w * r) %.9g, reference %.9g): the weights changed since (rerun "
                     "%s %s), or the loader reads this tensor wrongly",
                     p->names[e], g_dir, model, got, want, RERUN, g_dir);
    }
    free(ref);
    free(mine);
    free(wnorm);
}

/* Every parameter gradient of p against M.stat.<name>, and against
 * M.grad.<name> where the reference has the full gradient. */
static void check_params(report *rp, const char *model, const da_params *p, double rel)
{
    char prefix[64], key[300];
    double *ref = malloc(sizeof(double) * 3 * (size_t)p->n), *mine = malloc(sizeof(double) * 3 * (size_t)p->n);
    double *wnorm = malloc(sizeof(double) * (size_t)p->n);
    summarise(model, p, ref, mine, wnorm);
    /* gradient summaries */
    double rms_max = 0.0;
    for (int e = 0; e < p->n; e++)
        rms_max = fmax(rms_max, sqrt(ref[3 * e] / (double)da_shape_size(p->ndim[e], p->shape[e])));
    int worst = -1;
    double worst_ratio = -1.0;
    for (int e = 0; e < p->n; e++) {
        size_t n = da_shape_size(p->ndim[e], p->shape[e]);
        double scale = fmax(sqrt(ref[3 * e]), FLOOR * sqrt((double)n) * rms_max);
        double dn = fabs(sqrt(mine[3 * e]) - sqrt(ref[3 * e])), dp = fabs(mine[3 * e + 1] - ref[3 * e + 1]) / PROBE_K;
        double ratio = fmax(dn, dp) / fmax(scale, 1e-30);
        if (isnan(ratio)) ratio = INFINITY;
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            worst = e;
        }
    }
    if (worst >= 0) {
        rp->stat = worst_ratio;
        snprintf(rp->stat_at, sizeof rp->stat_at, "%s", p->names[worst]);
        if (!(worst_ratio <= rel)) {
            int e = worst;
            fail_msg("%s: gradient of %s vs PyTorch: 2-norm %.9g vs %.9g, probe g.r %.9g vs %.9g: error / scale "
                     "%.3g > %.1g (scale %.3g)",
                     model, p->names[e], sqrt(mine[3 * e]), sqrt(ref[3 * e]), mine[3 * e + 1], ref[3 * e + 1],
                     worst_ratio, rel,
                     fmax(sqrt(ref[3 * e]), FLOOR * sqrt((double)da_shape_size(p->ndim[e], p->shape[e])) * rms_max));
        }
    }
    free(ref);
    free(mine);
    free(wnorm);

    /* full gradients of the small tensors: |err| <= rel * max(max|ref| of the
     * tensor, FLOOR_FULL * max|ref| over the stored tensors), as
     * tu_compare_params with the existing suites' floor */
    snprintf(prefix, sizeof prefix, "%s.grad.", model);
    double global = 0.0;
    int n_full = 0;
    for (int e = 0; e < p->n; e++) {
        snprintf(key, sizeof key, "%s%s", prefix, p->names[e]);
        if (!da_st_find(g_ref, key)) continue;
        float *want = tu_ref(g_ref, key, da_shape_size(p->ndim[e], p->shape[e]));
        global = fmax(global, tu_max_abs(want, da_shape_size(p->ndim[e], p->shape[e])));
        free(want);
        n_full++;
    }
    assert_true(n_full > 0);
    worst = -1;
    worst_ratio = -1.0;
    double worst_scale = 0.0;
    for (int e = 0; e < p->n; e++) {
        snprintf(key, sizeof key, "%s%s", prefix, p->names[e]);
        if (!da_st_find(g_ref, key)) continue;
        size_t n = da_shape_size(p->ndim[e], p->shape[e]);
        float *want = tu_ref(g_ref, key, n);
        double scale = fmax(tu_max_abs(want, n), FLOOR_FULL * global);
        double ratio = max_err(p->grad + p->offset[e], want, n) / fmax(scale, 1e-30);
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            worst = e;
            worst_scale = scale;
        }
        free(want);
    }
    rp->full = worst_ratio;
    snprintf(rp->full_at, sizeof rp->full_at, "%s", p->names[worst]);
    if (!(worst_ratio <= rel)) {
        snprintf(key, sizeof key, "%s%s", prefix, p->names[worst]);
        size_t n = da_shape_size(p->ndim[worst], p->shape[worst]);
        float *want = tu_ref(g_ref, key, n);
        char label[400];
        snprintf(label, sizeof label, "%s: full gradient of %s vs PyTorch (atol %.0e * %.3g)", model,
                 p->names[worst], rel, worst_scale);
        tu_assert_close(label, p->grad + p->offset[worst], want, n, rel * worst_scale, 0.0);
        free(want);
    }
}

static void print_report(const char *model, const report *rp, double rel)
{
    printf("shipped parity %s (%s): worst err/scale: outputs %.3g (%s), gradient summaries %.3g (%s), "
           "full gradients %.3g (%s); tolerance %.0e\n",
           model, g_dir, rp->out, rp->out_at, rp->stat, rp->stat_at, rp->full, rp->full_at, rel);
}

/* the prompts as token ids: the reference's, which must be the C tokenizer's */
static void ref_tokens(int *ids, uint8_t *keep, int *eos, int B, int T)
{
    float *idsf = tu_ref(g_ref, "text_encoder.ids", (size_t)B * T);
    float *keepf = tu_ref(g_ref, "text_encoder.keep", (size_t)B * T);
    float *eosf = tu_ref(g_ref, "text_encoder.eos", (size_t)B);
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int)idsf[i];
        keep[i] = keepf[i] != 0.0f;
    }
    assert_int_equal(da_text_eos_positions(eos, keep, B, T), DA_OK);
    for (int b = 0; b < B; b++) {
        assert_int_equal(eos[b], (int)eosf[b]);
        char k[32];
        snprintf(k, sizeof k, "prompt.%d", b);
        int c_ids[DA_MAX_TOKENS];
        uint8_t c_keep[DA_MAX_TOKENS];
        assert_int_equal(da_tokenize(meta(k), c_ids, c_keep, NULL), DA_OK);
        for (int j = 0; j < T; j++)
            if (c_ids[j] != ids[b * T + j] || c_keep[j] != keep[b * T + j])
                fail_msg("prompt %d token %d: C id %d keep %d, Python id %d keep %d", b, j, c_ids[j], c_keep[j],
                         ids[b * T + j], keep[b * T + j]);
    }
    free(idsf);
    free(keepf);
    free(eosf);
}

#define B 2
#define T DA_MAX_TOKENS

/* text encoder: features and pooled; L = sum(features * r_f) + sum(pooled * r_p).
 * Measured on build/weights-smoke: see the report line. */
static void test_text_encoder(void **state)
{
    (void)state;
    char js[512], st[512];
    weights_paths("text_encoder", js, st, sizeof js);
    da_text_config cfg = da_text_config_default();
    if (da_text_config_load(&cfg, js) != DA_OK) fail_msg("%s", da_last_error());
    da_text_encoder *m = da_text_encoder_create(&cfg, 1);
    assert_non_null(m);
    if (da_text_encoder_load(m, st) != DA_OK) fail_msg("%s", da_last_error());
    check_fingerprints("text_encoder", &m->params);
    assert_int_equal(atoi(meta("n")), B);
    assert_int_equal(atoi(meta("tokens")), T);
    int ids[B * T], eos[B];
    uint8_t keep[B * T];
    ref_tokens(ids, keep, eos, B, T);

    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_params_zero_grad(&m->params);
    da_tensor *f = da_text_encoder_forward(&t, m, ids, keep, B, T);
    assert_non_null(f);
    da_tensor *pooled = da_text_encoder_pool(&t, m, f, eos);
    float *rf = tu_ref(g_ref, "text_encoder.r_features", f->size);
    float *rpool = tu_ref(g_ref, "text_encoder.r_pooled", pooled->size);
    for (size_t i = 0; i < f->size; i++) f->grad[i] += rf[i];   /* upstream of pooled: seeded before replay */
    da_tape_backward_from(&t, pooled, rpool);

    report rp = {0};
    check_out(&rp, "text_encoder", "features", f->data, f->size, REL_TEXT);
    check_out(&rp, "text_encoder", "pooled", pooled->data, pooled->size, REL_TEXT);
    check_params(&rp, "text_encoder", &m->params, REL_TEXT);
    print_report("text_encoder", &rp, REL_TEXT);
    free(rf);
    free(rpool);
    da_tape_free(&t);
    da_text_encoder_free(m);
}

/* CLIP image tower: emb; L = InfoNCE(emb, txt, logit_scale) + sum(emb * r_emb) */
static void test_clip(void **state)
{
    (void)state;
    char js[512], st[512];
    weights_paths("clip", js, st, sizeof js);
    da_clip_config cfg = da_clip_config_default();
    if (da_clip_config_load(&cfg, js) != DA_OK) fail_msg("%s", da_last_error());
    da_clip *m = da_clip_create(&cfg, 1);
    assert_non_null(m);
    if (da_clip_load(m, st) != DA_OK) fail_msg("%s", da_last_error());
    check_fingerprints("clip", &m->params);
    int S = cfg.image_size, E = cfg.embed_dim;
    size_t ni = (size_t)B * cfg.in_channels * S * S, nt = (size_t)B * E;
    float *images = tu_ref(g_ref, "clip.images", ni), *txt = tu_ref(g_ref, "clip.txt", nt);
    float *gi = calloc(ni, sizeof(float)), *gt = calloc(nt, sizeof(float));
    float *r_emb = tu_ref(g_ref, "clip.r_emb", nt);

    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_params_zero_grad(&m->params);
    int is[4] = {B, cfg.in_channels, S, S}, ts[2] = {B, E};
    da_tensor *emb = da_clip_image_forward(&t, m, da_leaf(&t, images, gi, 4, is));
    assert_non_null(emb);
    da_tensor *loss = da_clip_loss(&t, emb, da_leaf(&t, txt, gt, 2, ts), da_clip_logit_scale(&t, m));
    for (size_t i = 0; i < emb->size; i++) emb->grad[i] += r_emb[i];
    da_tape_backward(&t, loss);

    report rp = {0};
    check_out(&rp, "clip", "emb", emb->data, nt, REL_CLIP);
    check_out(&rp, "clip", "loss", loss->data, 1, REL_CLIP);
    check_out(&rp, "clip", "grad_images", gi, ni, REL_CLIP);
    check_out(&rp, "clip", "grad_txt", gt, nt, REL_CLIP);
    check_params(&rp, "clip", &m->params, REL_CLIP);
    print_report("clip", &rp, REL_CLIP);
    free(images);
    free(txt);
    free(gi);
    free(gt);
    free(r_emb);
    da_tape_free(&t);
    da_clip_free(m);
}

/* VAE: encode -> z with the reference eps -> decode; L = the training loss */
static void test_vae(void **state)
{
    (void)state;
    char js[512], st[512];
    weights_paths("vae", js, st, sizeof js);
    da_vae_config cfg = da_vae_config_default();
    if (da_vae_config_load(&cfg, js) != DA_OK) fail_msg("%s", da_last_error());
    da_vae *m = da_vae_create(&cfg, 1);
    assert_non_null(m);
    if (da_vae_load(m, st) != DA_OK) fail_msg("%s", da_last_error());
    check_fingerprints("vae", &m->params);
    const int S = DA_IMG, L = DA_IMG / 4;
    size_t nx = (size_t)B * cfg.in_channels * S * S, nz = (size_t)B * cfg.latent_channels * L * L;
    float *x = tu_ref(g_ref, "vae.x", nx), *eps = tu_ref(g_ref, "vae.eps", nz);
    float *gx = calloc(nx, sizeof(float));

    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_params_zero_grad(&m->params);
    int xs[4] = {B, cfg.in_channels, S, S};
    da_tensor *xt = da_leaf(&t, x, gx, 4, xs), *mean, *logvar;
    da_vae_encode(&t, m, xt, &mean, &logvar);
    assert_int_equal(mean->size, nz);
    da_tensor *z = da_vae_sample_eps(&t, mean, logvar, eps);
    da_tensor *xh = da_vae_decode(&t, m, z);
    float recon, kl;
    da_tensor *loss = da_vae_loss(&t, m, xt, xh, mean, logvar, &recon, &kl);
    da_tape_backward(&t, loss);

    report rp = {0};
    check_out(&rp, "vae", "mean", mean->data, nz, REL_VAE);
    check_out(&rp, "vae", "logvar", logvar->data, nz, REL_VAE);
    check_out(&rp, "vae", "z", z->data, nz, REL_VAE);
    check_out(&rp, "vae", "x_hat", xh->data, nx, REL_VAE);
    check_out(&rp, "vae", "recon", &recon, 1, REL_VAE);
    check_out(&rp, "vae", "kl", &kl, 1, REL_VAE);
    check_out(&rp, "vae", "loss", loss->data, 1, REL_VAE);
    check_out(&rp, "vae", "grad_x", gx, nx, REL_VAE);
    check_params(&rp, "vae", &m->params, REL_VAE);
    print_report("vae", &rp, REL_VAE);
    free(x);
    free(eps);
    free(gx);
    da_tape_free(&t);
    da_vae_free(m);
}

/* UNet: eps of noisy latents at two timesteps, conditioned on the prompts'
 * text features with their key mask; L = sum(out * dout) */
static void run_unet(const char *name)
{
    char js[512], st[512];
    weights_paths(name, js, st, sizeof js);
    da_unet_config cfg = da_unet_config_default();
    if (da_unet_config_load(&cfg, js) != DA_OK) fail_msg("%s", da_last_error());
    da_unet *m = da_unet_create(&cfg, 1);
    assert_non_null(m);
    if (da_unet_load(m, st) != DA_OK) fail_msg("%s", da_last_error());
    check_fingerprints(name, &m->params);
    const int L = DA_IMG / 4;
    size_t nx = (size_t)B * cfg.in_channels * L * L, ny = (size_t)B * cfg.out_channels * L * L;
    size_t nc = (size_t)B * T * cfg.context_dim;
    char key[64];
#define REF(what, n) (snprintf(key, sizeof key, "%s." what, name), tu_ref(g_ref, key, n))
    float *x = REF("x", nx), *ts = REF("t", B), *ctx = REF("context", nc), *keepf = REF("keep", (size_t)B * T);
    float *dout = REF("dout", ny);
#undef REF
    uint8_t keep[B * T];
    for (int i = 0; i < B * T; i++) keep[i] = keepf[i] != 0.0f;
    float *gx = calloc(nx, sizeof(float)), *gc = calloc(nc, sizeof(float));

    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_params_zero_grad(&m->params);
    int xs[4] = {B, cfg.in_channels, L, L}, cs[3] = {B, T, cfg.context_dim};
    da_tensor *out = da_unet_forward(&t, m, da_leaf(&t, x, gx, 4, xs), ts, da_leaf(&t, ctx, gc, 3, cs), keep);
    assert_non_null(out);
    assert_int_equal(out->size, ny);
    da_tape_backward_from(&t, out, dout);

    report rp = {0};
    check_out(&rp, name, "out", out->data, ny, REL_UNET);
    check_out(&rp, name, "grad_x", gx, nx, REL_UNET);
    check_out(&rp, name, "grad_context", gc, nc, REL_UNET);
    check_params(&rp, name, &m->params, REL_UNET);
    print_report(name, &rp, REL_UNET);
    free(x);
    free(ts);
    free(ctx);
    free(keepf);
    free(dout);
    free(gx);
    free(gc);
    da_tape_free(&t);
    da_unet_free(m);
}

static void test_unet(void **state)
{
    (void)state;
    run_unet("unet");
}

/* unet-b when the directory has it (the reference lists its models) */
static void test_unet_b(void **state)
{
    (void)state;
    if (!g_ref) fail_msg("cannot read %s: %s (run from the repository root)", REF_FILE, da_last_error());
    const char *models = meta("models");
    if (!strstr(models, "unet-b")) {
        printf("shipped parity: the reference has no unet-b (%s)\n", models);
        return;
    }
    run_unet("unet-b");
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_encoder),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_vae),
        cmocka_unit_test(test_unet),
        cmocka_unit_test(test_unet_b),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
