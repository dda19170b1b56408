/* Golden outputs (issue 3, item 9; issue 8): fixed-seed samples of the
 * shipped weights, written by scripts/make-golden.sh (`make golden`) into
 * tests/golden/ (manifest.tsv, NAME.safetensors with the final latent,
 * NAME.png), made with the PORTABLE GEMM, whose bits are the same on every
 * machine and architecture (gemm_portable.c; elementary functions in
 * mathf.c).
 *
 * Checks, per golden:
 *   - portable GEMM: 1 and 2 threads give the same bits, and the latent and
 *     the PNG equal the files BIT FOR BIT, on any machine (x86-64 with or
 *     without AVX2/AVX-512, aarch64 under qemu in CI);
 *   - OpenBLAS (when built with it): 1 and 2 threads give the same bits;
 *     against the files within 1e-5 of the latent's scale (another summation
 *     order: OpenBLAS picks its kernel per CPU) and one 8-bit level;
 *   - batch invariance, with each backend: the golden generated alone, as
 *     image 3 of a batch of 3 and as image 6 of a batch of 8 (other prompts
 *     and seeds around it) gives the same bits.
 *
 * When the weights are missing (weights/MODEL.safetensors; the weights are
 * trained by `make weights` and committed):
 *   - no goldens either: "weights/ missing: golden test not run", skipped;
 *   - goldens present: FAILURE, goldens are only ever committed with the
 *     weights they were made from.
 * Weights without goldens: skipped with "run make golden". When both
 * weights/SHA256SUMS and tests/golden/weights.SHA256SUMS exist, every line
 * of the second must be in the first (models shipped since, such as
 * unet-dpo, add lines and change no golden): goldens of other weights are a
 * failure that says to rerun `make golden`.
 * DA_GOLDEN_DIR and DA_GOLDEN_WEIGHTS override the two directories (dry
 * runs of the script against other weights). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "core/fileio.h"

#define MAX_GOLDEN 16
#define LINE_CAP 512
/* OpenBLAS only (see the top of the file): its kernels round differently
 * from the portable GEMM that made the goldens, and 20 DDIM steps with CFG 3
 * amplify those last-bit differences. Relative to the latent's scale
 * (max(1, max |golden|)), as rounding is. Measured on the Zen, Haswell and
 * Prescott kernels: up to 1.1e-5 relative (2.6e-5 absolute); 1e-4 leaves
 * ~10x margin for other kernels, and a real change (an op, the weights)
 * moves latents by 1e-2 or more. */
#define LATENT_TOL 1e-4

typedef struct golden {
    char name[64];
    uint64_t seed;
    int steps;
    float cfg;
    da_sampler_kind sampler;
    char prompt[DA_CAPTION_MAX * 2];
} golden;

static const char *g_gdir, *g_wdir;
static golden g_list[MAX_GOLDEN];
static int g_n;
static da_pipeline *g_pipe;

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

static int weights_present(const char *dir)
{
    const char *names[3] = {"text_encoder", "vae", "unet"};
    for (int i = 0; i < 3; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, names[i]);
        if (access(p, R_OK)) return 0;
    }
    return 1;
}

/* a whole (small) text file, or NULL when it cannot be read */
static char *slurp(const char *path)
{
    char *buf;
    size_t n;
    return da_read_file(path, 1 << 20, &buf, &n) == DA_OK ? buf : NULL;
}

/* manifest.tsv: "# header", then name \t seed \t steps \t cfg \t sampler \t prompt */
static void read_manifest(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    char line[LINE_CAP];
    g_n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = '\0';
        if (g_n == MAX_GOLDEN) fail_msg("%s: more than %d goldens", path, MAX_GOLDEN);
        golden *g = &g_list[g_n];
        char *field[6], *save = NULL, *p = line;
        int k = 0;
        for (char *tok = strtok_r(p, "\t", &save); tok && k < 6; tok = strtok_r(NULL, "\t", &save)) field[k++] = tok;
        if (k != 6) fail_msg("%s: line %d has %d fields, not 6", path, g_n + 1, k);
        snprintf(g->name, sizeof g->name, "%s", field[0]);
        g->seed = strtoull(field[1], NULL, 10);
        g->steps = atoi(field[2]);
        g->cfg = strtof(field[3], NULL);
        if (da_sampler_parse(field[4], &g->sampler) != DA_OK) fail_msg("%s: %s", path, da_last_error());
        snprintf(g->prompt, sizeof g->prompt, "%s", field[5]);
        g_n++;
    }
    fclose(f);
    if (g_n == 0) fail_msg("%s lists no goldens", path);
}

/* n images in one pipeline call, with the options of golden g */
static void generate_batch(const golden *g, const char *const *prompts, const uint64_t *seeds, int n,
                           float *lat, float *img)
{
    da_sample_opts o = da_sample_opts_default();
    o.sampler = g->sampler;
    o.steps = g->steps;
    o.cfg = g->cfg;
    if (da_pipeline_generate(g_pipe, &o, prompts, NULL, seeds, n, NULL, NULL, img, lat) != DA_OK)
        fail_msg("%s: %s", g->name, da_last_error());
}

/* one golden alone, as `dalign sample --n 1` made it */
static void generate(const golden *g, float *lat, float *img)
{
    const char *pr[1] = {g->prompt};
    generate_batch(g, pr, &g->seed, 1, lat, img);
}

/* The golden as image `at` of a batch of n whose other images take the
 * other goldens' prompts and other seeds: its latent must equal `alone`. */
static void check_in_batch(const golden *g, int n, int at, const float *alone, size_t nl)
{
    const char *pr[8];
    uint64_t seeds[8];
    assert_true(n <= 8 && at < n);
    for (int i = 0; i < n; i++) {
        pr[i] = g_list[(i + 1) % g_n].prompt;
        seeds[i] = 1000 + (uint64_t)i;
    }
    pr[at] = g->prompt;
    seeds[at] = g->seed;
    float *lat = malloc((size_t)n * nl * sizeof(float)), *img = malloc((size_t)n * DA_IMG_FLOATS * sizeof(float));
    generate_batch(g, pr, seeds, n, lat, img);
    char what[1024];
    snprintf(what, sizeof what, "%.60s latent (%s GEMM): alone vs image %d of a batch of %d", g->name,
             da_gemm_backend(), at + 1, n);
    tu_assert_bits(what, alone, lat + (size_t)at * nl, nl);
    free(lat);
    free(img);
}

/* Generate g with the current backend at 1 and 2 threads (same bits), alone
 * and inside batches (same bits); compare with the files: bit-identical
 * (`exact`) or within LATENT_TOL and one 8-bit level. */
static void check_one(const golden *g, size_t nl, int exact)
{
    float *lat1 = malloc(nl * sizeof(float)), *lat2 = malloc(nl * sizeof(float));
    float *img1 = malloc(DA_IMG_FLOATS * sizeof(float)), *img2 = malloc(DA_IMG_FLOATS * sizeof(float));
    int saved = da_get_threads();
    da_set_threads(1);
    generate(g, lat1, img1);
    da_set_threads(2);
    generate(g, lat2, img2);
    check_in_batch(g, 3, 2, lat1, nl);
    check_in_batch(g, 8, 5, lat1, nl);
    da_set_threads(saved);
    char what[1024];
    snprintf(what, sizeof what, "%.60s latent (%s GEMM), 1 vs 2 threads", g->name, da_gemm_backend());
    tu_assert_bits(what, lat1, lat2, nl);
    snprintf(what, sizeof what, "%.60s image (%s GEMM), 1 vs 2 threads", g->name, da_gemm_backend());
    tu_assert_bits(what, img1, img2, DA_IMG_FLOATS);

    /* the stored latent */
    char path[600];
    snprintf(path, sizeof path, "%.400s/%.60s.safetensors", g_gdir, g->name);
    da_safetensors *st;
    if (da_st_open(path, &st) != DA_OK) fail_msg("%s", da_last_error());
    int shape[4] = {1, g_pipe->vae->cfg.latent_channels, g_pipe->latent_h, g_pipe->latent_w};
    float *want = malloc(nl * sizeof(float));
    if (da_st_read(st, "latents", want, 4, shape) != DA_OK) fail_msg("%s: %s", path, da_last_error());
    da_st_close(st);
    double worst = 0.0;
    for (size_t i = 0; i < nl; i++) worst = fmax(worst, fabs((double)lat1[i] - want[i]));
    if (exact) {
        snprintf(what, sizeof what,
                 "%.60s latent (portable GEMM) vs %s: must be bit-identical on every machine "
                 "(weights retrained or an op changed? rerun make golden)", g->name, path);
        tu_assert_bits(what, lat1, want, nl);
    } else {
        snprintf(what, sizeof what, "%.60s latent (%s GEMM) vs %s (weights retrained? rerun make golden)", g->name,
                 da_gemm_backend(), path);
        double scale = 1.0;
        for (size_t i = 0; i < nl; i++) scale = fmax(scale, fabs(want[i]));
        tu_assert_close(what, lat1, want, nl, LATENT_TOL * scale, 0.0);
    }

    /* the stored PNG: 8-bit, so a 1e-5 change can move a pixel across a rounding boundary */
    snprintf(path, sizeof path, "%.400s/%.60s.png", g_gdir, g->name);
    int w, h, c;
    unsigned char *png = stbi_load(path, &w, &h, &c, 3);
    if (!png) fail_msg("cannot read %s", path);
    assert_int_equal(w, DA_IMG);
    assert_int_equal(h, DA_IMG);
    uint8_t rgb[DA_IMG * DA_IMG * 3];
    da_image_to_rgb8(img1, DA_IMG, DA_IMG, rgb);
    int off = 0;
    for (int i = 0; i < DA_IMG * DA_IMG * 3; i++) {
        int d = abs((int)rgb[i] - (int)png[i]);
        if (d > (exact ? 0 : 1)) fail_msg("%s: byte %d is %d, the golden PNG has %d", g->name, i, rgb[i], png[i]);
        off += d != 0;
    }
    stbi_image_free(png);
    printf("golden %s, %s GEMM: %s (max |latent - golden| %.3g, %d PNG bytes off by one; same bits alone and "
           "in batches of 3 and 8, 1 and 2 threads) \"%s\"\n",
           g->name, da_gemm_backend(), !memcmp(lat1, want, nl * sizeof(float)) ? "bit-identical" : "within tolerance",
           worst, off, g->prompt);
    free(want);
    free(lat1);
    free(lat2);
    free(img1);
    free(img2);
}

static void test_golden(void **state)
{
    (void)state;
    char manifest[512], sums_w[512], sums_g[512];
    snprintf(manifest, sizeof manifest, "%s/manifest.tsv", g_gdir);
    int have_golden = access(manifest, R_OK) == 0, have_weights = weights_present(g_wdir);
    if (!have_weights) {
        if (have_golden)
            fail_msg("%s/ missing: golden test not run, but %s holds goldens: goldens are committed together "
                     "with the weights they were made from (make weights, then make golden)",
                     g_wdir, manifest);
        printf("%s/ missing: golden test not run (no goldens in %s/ either: make weights, then make golden)\n",
               g_wdir, g_gdir);
        skip();
    }
    if (!have_golden) /* the goldens ship with the weights they were made from */
        fail_msg("%s missing while %s/ holds weights: make golden writes it", manifest, g_wdir);
    snprintf(sums_w, sizeof sums_w, "%s/SHA256SUMS", g_wdir);
    snprintf(sums_g, sizeof sums_g, "%s/weights.SHA256SUMS", g_gdir);
    char *a = slurp(sums_w), *b = slurp(sums_g);
    if (a && b) {
        /* every file the goldens were made from is shipped unchanged; models
         * shipped later (unet-dpo, refiner-ref, ...) add lines of their own
         * and change no golden image */
        const char *line = b;
        while (*line) {
            const char *end = strchr(line, '\n');
            size_t n = end ? (size_t)(end - line) + 1 : strlen(line);
            char want[512];
            snprintf(want, sizeof want, "%.*s", (int)(n < sizeof want ? n : sizeof want - 1), line);
            if (n > 1 && !strstr(a, want))
                fail_msg("%s: the line '%.*s' is not in %s: the goldens were made from other weights; rerun make "
                         "golden", sums_g, (int)(end ? n - 1 : n), line, sums_w);
            line += n;
        }
    }
    free(a);
    free(b);

    read_manifest(manifest);
    if (da_pipeline_load(&g_pipe, g_wdir, "unet") != DA_OK) fail_msg("%s", da_last_error());
    size_t nl = (size_t)g_pipe->vae->cfg.latent_channels * g_pipe->latent_h * g_pipe->latent_w;
    const char *saved = da_gemm_backend();
    assert_int_equal(da_gemm_set_backend("portable"), DA_OK);
    for (int i = 0; i < g_n; i++) check_one(&g_list[i], nl, 1);
    /* DA_GOLDEN_PORTABLE_ONLY=1: skip the OpenBLAS pass (CI's aarch64 stage
     * under qemu, where it would only repeat the x86 check ten times slower) */
    const char *only = getenv("DA_GOLDEN_PORTABLE_ONLY");
    if (da_gemm_set_backend("openblas") == DA_OK && !(only && !strcmp(only, "1")))
        for (int i = 0; i < g_n; i++) check_one(&g_list[i], nl, 0);
    assert_int_equal(da_gemm_set_backend(saved), DA_OK);
}

static int teardown(void **state)
{
    (void)state;
    da_pipeline_free(g_pipe);
    return 0;
}

int main(void)
{
    da_threads_init();
    g_gdir = env_or("DA_GOLDEN_DIR", "tests/golden");
    g_wdir = env_or("DA_GOLDEN_WEIGHTS", "weights");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_golden, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
