/* Golden outputs (issue 3, item 9): fixed-seed samples of the shipped
 * weights, written by scripts/make-golden.sh (`make golden`) into
 * tests/golden/ (manifest.tsv, NAME.safetensors with the final latent,
 * NAME.png), regenerated here image by image as the script made them
 * (`dalign sample --n 1`: one image per pipeline call, since with OpenBLAS
 * an image's bits depend on its batch).
 *
 * Checks, per golden: 1 and 2 threads give the same bits; the latent is
 * within 1e-5 of the file (times max(1, max |latent|)) and the PNG within
 * one 8-bit level. The goldens
 * were made on the dev machine with OpenBLAS; another BLAS or CPU (another
 * GEMM kernel, another summation order) may differ by rounding, and that
 * is what the 1e-5 allows; on the machine that made them they are
 * bit-identical (the test says which it saw).
 *
 * When the weights are missing (weights/MODEL.safetensors; the weights are
 * trained by `make weights` and committed):
 *   - no goldens either: "weights/ missing: golden test not run", skipped;
 *   - goldens present: FAILURE, goldens are only ever committed with the
 *     weights they were made from.
 * Weights without goldens: skipped with "run make golden". When both
 * weights/SHA256SUMS and tests/golden/weights.SHA256SUMS exist they must be
 * equal: goldens of other weights are a failure that says to rerun
 * `make golden`.
 * DA_GOLDEN_DIR and DA_GOLDEN_WEIGHTS override the two directories (dry
 * runs of the script against other weights). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image.h>

#define MAX_GOLDEN 16
#define LINE_CAP 512
/* see the top of the file: rounding on another BLAS / CPU. Relative to the
 * latent's scale (max(1, max |golden|)), as rounding is: for the trained
 * weights' unit-scale latents that is 1e-5 absolute. */
#define LATENT_TOL 1e-5

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

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) buf[n] = '\0';
    else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
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

/* one golden alone, as `dalign sample --n 1` made it */
static void generate(const golden *g, float *lat, float *img)
{
    da_sample_opts o = da_sample_opts_default();
    o.sampler = g->sampler;
    o.steps = g->steps;
    o.cfg = g->cfg;
    const char *pr[1] = {g->prompt};
    if (da_pipeline_generate(g_pipe, &o, pr, NULL, &g->seed, 1, NULL, NULL, img, lat) != DA_OK)
        fail_msg("%s: %s", g->name, da_last_error());
}

static void check_one(const golden *g, size_t nl)
{
    float *lat1 = malloc(nl * sizeof(float)), *lat2 = malloc(nl * sizeof(float));
    float *img1 = malloc(DA_IMG_FLOATS * sizeof(float)), *img2 = malloc(DA_IMG_FLOATS * sizeof(float));
    int saved = da_get_threads();
    da_set_threads(1);
    generate(g, lat1, img1);
    da_set_threads(2);
    generate(g, lat2, img2);
    da_set_threads(saved);
    char what[1024];
    snprintf(what, sizeof what, "%.60s latent, 1 vs 2 threads", g->name);
    tu_assert_bits(what, lat1, lat2, nl);
    snprintf(what, sizeof what, "%.60s image, 1 vs 2 threads", g->name);
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
    int same = !memcmp(lat1, want, nl * sizeof(float));
    snprintf(what, sizeof what, "%.60s latent vs %s (weights retrained? rerun make golden)", g->name, path);
    double scale = 1.0;
    for (size_t i = 0; i < nl; i++) scale = fmax(scale, fabs(want[i]));
    tu_assert_close(what, lat1, want, nl, LATENT_TOL * scale, 0.0);

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
        if (d > 1) fail_msg("%s: byte %d is %d, the golden PNG has %d", g->name, i, rgb[i], png[i]);
        off += d != 0;
    }
    stbi_image_free(png);
    printf("golden %s: %s (max |latent - golden| %.3g, %d PNG bytes off by one) \"%s\"\n", g->name,
           same ? "bit-identical" : "within tolerance", worst, off, g->prompt);
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
    if (a && b && strcmp(a, b))
        fail_msg("%s differs from %s: the goldens were made from other weights; rerun make golden", sums_g, sums_w);
    free(a);
    free(b);

    read_manifest(manifest);
    if (da_pipeline_load(&g_pipe, g_wdir, "unet") != DA_OK) fail_msg("%s", da_last_error());
    size_t nl = (size_t)g_pipe->vae->cfg.latent_channels * g_pipe->latent_h * g_pipe->latent_w;
    for (int i = 0; i < g_n; i++) check_one(&g_list[i], nl);
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
