#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tu_fill(float *x, size_t n, uint32_t seed, float lo, float hi)
{
    uint64_t s = 0x9E3779B97F4A7C15ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)((s >> 40) & 0xFFFFFF) / 16777216.0f;
        x[i] = lo + (hi - lo) * u;
    }
}

float *tu_alloc_fill(size_t n, uint32_t seed, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    assert_non_null(x);
    tu_fill(x, n, seed, lo, hi);
    return x;
}

void tu_assert_close(const char *what, const float *got, const float *want, size_t n,
                     double atol, double rtol)
{
    size_t worst = 0;
    double worst_excess = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)want[i]);
        double excess = err - (atol + rtol * fabs((double)want[i]));
        if (isnan(got[i]) != isnan(want[i])) excess = INFINITY;
        if (excess > worst_excess) { worst_excess = excess; worst = i; }
    }
    if (n && worst_excess > 0) {
        fail_msg("%s: mismatch at index %zu of %zu: got %.9g want %.9g (|err| %.3g > atol %.1g + rtol %.1g*|want|)",
                 what, worst, n, got[worst], want[worst], fabs((double)got[worst] - want[worst]),
                 atol, rtol);
    }
}

void tu_assert_bits(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s: bits differ at index %zu of %zu: %.9g vs %.9g", what, i, n, got[i], want[i]);
    }
}

void tu_grad_pattern(float *g, size_t n, uint32_t seed, float scale)
{
    tu_fill(g, n, seed, -1.0f, 1.0f);
    for (size_t i = 0; i < n; i++) g[i] = copysignf(0.5f + 0.5f * fabsf(g[i]), g[i]) * scale;
}

/* Runs the graph on a fresh tape. Inputs are copied so finite differences
 * can perturb them without touching the caller's arrays. Gradient buffers
 * start at grad_start[i], or at zero where grad_start is NULL. */
typedef struct run_state {
    da_tape tape;
    float *x[TU_MAX_IN];
    float *g[TU_MAX_IN];
    da_tensor *out;
} run_state;

static void run_forward(run_state *s, tu_build_fn fn, void *ctx, const tu_case *c, int with_grad,
                        float *const *grad_start)
{
    da_tape_init(&s->tape, 1 << 20);
    da_tape_set_grad(&s->tape, with_grad);
    da_tensor *in[TU_MAX_IN] = {0};
    for (int i = 0; i < c->n_in; i++) {
        size_t n = da_shape_size(c->ndim[i], c->shape[i]);
        s->x[i] = malloc((n ? n : 1) * sizeof(float));
        memcpy(s->x[i], c->data[i], n * sizeof(float));
        s->g[i] = (with_grad && c->needs_grad[i]) ? calloc(n ? n : 1, sizeof(float)) : NULL;
        if (s->g[i] && grad_start) memcpy(s->g[i], grad_start[i], n * sizeof(float));
        in[i] = da_leaf(&s->tape, s->x[i], s->g[i], c->ndim[i], c->shape[i]);
    }
    s->out = fn(&s->tape, in, ctx);
}

static void run_free(run_state *s, const tu_case *c)
{
    for (int i = 0; i < c->n_in; i++) { free(s->x[i]); free(s->g[i]); }
    da_tape_free(&s->tape);
}

static float *fixed_dout(size_t n)
{
    return tu_alloc_fill(n, 12345u, -1.0f, 1.0f);
}

/* Forward, then backward from dout (NULL: the fixed one); the output and the
 * final contents of the gradient buffers, which start at grad_start. */
static tu_result run_backward(tu_build_fn fn, void *ctx, const tu_case *c, const float *dout,
                              float *const *grad_start)
{
    tu_result r;
    memset(&r, 0, sizeof r);
    run_state s;
    memset(&s, 0, sizeof s);
    run_forward(&s, fn, ctx, c, 1, grad_start);
    r.out_n = s.out->size;
    r.out_ndim = s.out->ndim;
    memcpy(r.out_shape, s.out->shape, sizeof r.out_shape);
    r.out = malloc((r.out_n ? r.out_n : 1) * sizeof(float));
    memcpy(r.out, s.out->data, r.out_n * sizeof(float));
    float *own = dout ? NULL : fixed_dout(r.out_n);
    if (s.out->grad) da_tape_backward_from(&s.tape, s.out, dout ? dout : own);
    free(own);
    for (int i = 0; i < c->n_in; i++) {
        if (!c->needs_grad[i]) continue;
        size_t n = da_shape_size(c->ndim[i], c->shape[i]);
        r.grad[i] = malloc((n ? n : 1) * sizeof(float));
        memcpy(r.grad[i], s.g[i], n * sizeof(float));
    }
    run_free(&s, c);
    return r;
}

/* A power of two above max(1, max|g|) over the finite elements: the start
 * pattern then dwarfs the rounding of the gradient's own additions. */
static float pattern_scale(const float *g, size_t n)
{
    float m = 1.0f;
    for (size_t i = 0; i < n; i++)
        if (isfinite(g[i])) m = fmaxf(m, fabsf(g[i]));
    int e;
    frexpf(m, &e);
    return ldexpf(1.0f, e < 100 ? e : 100);
}

/* got - start (in double, exact) must equal want, the gradient from a zero
 * start, up to the rounding of the additions onto the start values:
 * |err| <= 1e-4 * scale (observed worst over the op suites: 3.3e-7 * scale,
 * conv2d's col2im adding k*k terms one by one), while |start| >= scale / 2,
 * so a backward that overwrites misses by 5000x the tolerance on every element
 * it writes. Non-finite gradients must stay the same non-finite value. */
static void assert_added_onto(int input, const float *got, const float *start, const float *want,
                              size_t n, float scale)
{
    for (size_t j = 0; j < n; j++) {
        double rest = (double)got[j] - (double)start[j];
        int ok = isfinite(want[j]) ? fabs(rest - want[j]) <= 1e-4 * scale
                                   : (isnan(want[j]) ? isnan(got[j]) : got[j] == want[j]);
        if (!ok)
            fail_msg("backward does not add into the gradient of input %d: element %zu of %zu started at "
                     "%.9g and ended at %.9g, i.e. %.9g added; from a zero start it is %.9g",
                     input, j, n, start[j], got[j], rest, want[j]);
    }
}

/* dalign's backward ADDS into gradient buffers (a tensor used twice gets both
 * contributions), which a run from zero cannot tell from overwriting. So run
 * the graph again with every gradient buffer starting at a pseudo-random
 * pattern (not a constant, which a wrong formula could cancel) and check
 * that subtracting it leaves the gradient from zero. */
static void check_backward_adds(tu_build_fn fn, void *ctx, const tu_case *c, const float *dout,
                                const tu_result *from_zero)
{
    int any = 0;
    for (int i = 0; i < c->n_in; i++) any |= c->needs_grad[i];
    if (!any) return;
    float *start[TU_MAX_IN] = {0};
    float scale[TU_MAX_IN] = {0};
    for (int i = 0; i < c->n_in; i++) {
        if (!c->needs_grad[i]) continue;
        size_t n = da_shape_size(c->ndim[i], c->shape[i]);
        scale[i] = pattern_scale(from_zero->grad[i], n);
        start[i] = malloc((n ? n : 1) * sizeof(float));
        tu_grad_pattern(start[i], n, 777u + (uint32_t)i, scale[i]);
    }
    tu_result r = run_backward(fn, ctx, c, dout, start);
    for (int i = 0; i < c->n_in; i++) {
        if (!c->needs_grad[i]) continue;
        size_t n = da_shape_size(c->ndim[i], c->shape[i]);
        assert_added_onto(i, r.grad[i], start[i], from_zero->grad[i], n, scale[i]);
        free(start[i]);
    }
    tu_result_free(&r);
}

tu_result tu_run(tu_build_fn fn, void *ctx, const tu_case *c, const float *dout)
{
    /* the returned gradients come from a zero start: exact, so the suites can
     * compare them bit for bit */
    tu_result r = run_backward(fn, ctx, c, dout, NULL);
    check_backward_adds(fn, ctx, c, dout, &r);
    return r;
}

void tu_result_free(tu_result *r)
{
    free(r->out);
    for (int i = 0; i < TU_MAX_IN; i++) free(r->grad[i]);
    memset(r, 0, sizeof *r);
}

/* L = sum(out * w) in double, forward without gradients */
static double loss_at(tu_build_fn fn, void *ctx, const tu_case *c, const float *w)
{
    run_state s;
    memset(&s, 0, sizeof s);
    run_forward(&s, fn, ctx, c, 0, NULL);
    double L = 0.0;
    for (size_t i = 0; i < s.out->size; i++) L += (double)s.out->data[i] * (double)w[i];
    run_free(&s, c);
    return L;
}

void tu_gradcheck(const char *what, tu_build_fn fn, void *ctx, const tu_case *c,
                  double eps, double atol, double rtol)
{
    tu_result r = tu_run(fn, ctx, c, NULL);
    float *w = fixed_dout(r.out_n);
    tu_case pert = *c;
    for (int i = 0; i < c->n_in; i++) {
        if (!c->needs_grad[i]) continue;
        size_t n = da_shape_size(c->ndim[i], c->shape[i]);
        float *x = malloc(n * sizeof(float));
        memcpy(x, c->data[i], n * sizeof(float));
        pert.data[i] = x;
        float *numeric = malloc(n * sizeof(float));
        for (size_t j = 0; j < n; j++) {
            float orig = x[j];
            x[j] = orig + (float)eps;
            double lp = loss_at(fn, ctx, &pert, w);
            x[j] = orig - (float)eps;
            double lm = loss_at(fn, ctx, &pert, w);
            x[j] = orig;
            numeric[j] = (float)((lp - lm) / (2.0 * eps));
        }
        char label[256];
        snprintf(label, sizeof label, "%s: d/d input %d (analytic vs finite difference)", what, i);
        tu_assert_close(label, r.grad[i], numeric, n, atol, rtol);
        free(numeric);
        free(x);
        pert.data[i] = c->data[i];
    }
    free(w);
    tu_result_free(&r);
}

void tu_check_threads(const char *what, tu_build_fn fn, void *ctx, const tu_case *c)
{
    int saved = da_get_threads();
    da_set_threads(1);
    tu_result r1 = tu_run(fn, ctx, c, NULL);
    da_set_threads(2);
    tu_result r2 = tu_run(fn, ctx, c, NULL);
    da_set_threads(saved);
    char label[256];
    snprintf(label, sizeof label, "%s: output, 1 vs 2 threads", what);
    tu_assert_bits(label, r1.out, r2.out, r1.out_n);
    for (int i = 0; i < c->n_in; i++) {
        if (!c->needs_grad[i]) continue;
        snprintf(label, sizeof label, "%s: grad of input %d, 1 vs 2 threads", what, i);
        tu_assert_bits(label, r1.grad[i], r2.grad[i], da_shape_size(c->ndim[i], c->shape[i]));
    }
    tu_result_free(&r1);
    tu_result_free(&r2);
}

da_safetensors *tu_oracle(const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "tests/oracle/%s.safetensors", file);
    da_safetensors *st = NULL;
    da_status s = da_st_open(path, &st);
    if (s != DA_OK) fail_msg("cannot load reference file %s: %s (run tests from the repo root)", path, da_last_error());
    return st;
}

float *tu_ref(da_safetensors *st, const char *name, size_t expect_n)
{
    const da_st_tensor *t = da_st_find(st, name);
    if (!t) fail_msg("reference tensor '%s' not found", name);
    if (expect_n && t->numel != expect_n)
        fail_msg("reference tensor '%s' has %zu elements, expected %zu", name, t->numel, expect_n);
    float *x = malloc((t->numel ? t->numel : 1) * sizeof(float));
    da_st_to_f32(st, t, x);
    return x;
}

int tu_ref_shape(da_safetensors *st, const char *name, int *shape)
{
    const da_st_tensor *t = da_st_find(st, name);
    if (!t) fail_msg("reference tensor '%s' not found", name);
    for (int i = 0; i < t->ndim; i++) shape[i] = (int)t->shape[i];
    return t->ndim;
}

void tu_oracle_case(da_safetensors *st, const char *case_name, tu_build_fn fn, void *ctx,
                    const char *const *input_names, int n_in, double atol, double rtol)
{
    char name[256];
    tu_case c;
    memset(&c, 0, sizeof c);
    c.n_in = n_in;
    for (int i = 0; i < n_in; i++) {
        snprintf(name, sizeof name, "%s.%s", case_name, input_names[i]);
        c.ndim[i] = tu_ref_shape(st, name, c.shape[i]);
        c.data[i] = tu_ref(st, name, 0);
        snprintf(name, sizeof name, "%s.grad.%s", case_name, input_names[i]);
        c.needs_grad[i] = da_st_find(st, name) != NULL;
    }
    snprintf(name, sizeof name, "%s.out", case_name);
    float *want = tu_ref(st, name, 0);
    const da_st_tensor *wt = da_st_find(st, name);
    snprintf(name, sizeof name, "%s.dout", case_name);
    float *dout = tu_ref(st, name, wt->numel);
    tu_result r = tu_run(fn, ctx, &c, dout);
    if (r.out_n != wt->numel) fail_msg("%s: output has %zu elements, reference %zu", case_name, r.out_n, wt->numel);
    snprintf(name, sizeof name, "%s: forward vs PyTorch", case_name);
    tu_assert_close(name, r.out, want, r.out_n, atol, rtol);
    for (int i = 0; i < n_in; i++) {
        if (!c.needs_grad[i]) continue;
        snprintf(name, sizeof name, "%s.grad.%s", case_name, input_names[i]);
        float *g = tu_ref(st, name, da_shape_size(c.ndim[i], c.shape[i]));
        snprintf(name, sizeof name, "%s: grad %s vs PyTorch", case_name, input_names[i]);
        tu_assert_close(name, r.grad[i], g, da_shape_size(c.ndim[i], c.shape[i]), atol, rtol);
        free(g);
    }
    tu_result_free(&r);
    free(want);
    free(dout);
    for (int i = 0; i < n_in; i++) free(c.data[i]);
}

float tu_max_abs(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(x[i]));
    return m;
}

void tu_check_scaled(da_safetensors *st, const char *name, const float *got, size_t n, double rel,
                     double floor)
{
    float *want = tu_ref(st, name, n);
    double scale = fmax(tu_max_abs(want, n), floor);
    if (getenv("DA_TEST_VERBOSE")) {
        double err = 0.0;
        for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)got[i] - want[i]));
        printf("  %s: max err / scale = %.3g\n", name, err / scale);
    }
    char label[256];
    snprintf(label, sizeof label, "%s vs PyTorch (atol %.0e * %.3g)", name, rel, scale);
    tu_assert_close(label, got, want, n, rel * scale, 0.0);
    free(want);
}

void tu_compare_params(da_safetensors *st, const char *prefix, const da_params *p, double rel, double floor)
{
    float **want = calloc((size_t)(p->n ? p->n : 1), sizeof *want);
    assert_non_null(want);
    double global = 0.0;
    for (int e = 0; e < p->n; e++) {
        char name[300];
        snprintf(name, sizeof name, "%s%s", prefix, p->names[e]);
        size_t n = da_shape_size(p->ndim[e], p->shape[e]);
        want[e] = tu_ref(st, name, n);
        global = fmax(global, tu_max_abs(want[e], n));
    }
    int worst = -1;
    double worst_ratio = -1.0, worst_scale = 0.0;
    for (int e = 0; e < p->n; e++) {
        size_t n = da_shape_size(p->ndim[e], p->shape[e]);
        const float *got = p->grad + p->offset[e];
        double scale = fmax(tu_max_abs(want[e], n), floor * global), err = 0.0;
        for (size_t i = 0; i < n; i++) err = fmax(err, fabs((double)got[i] - want[e][i]));
        double ratio = err / fmax(scale, 1e-30);  /* an all-zero reference: any error fails */
        if (ratio > worst_ratio || isnan(ratio)) { worst_ratio = ratio; worst = e; worst_scale = scale; }
    }
    if (worst >= 0 && getenv("DA_TEST_VERBOSE"))
        printf("  worst gradient: %s%s, max err / scale = %.3g\n", prefix, p->names[worst], worst_ratio);
    if (worst >= 0 && !(worst_ratio <= rel)) {
        char label[400];
        snprintf(label, sizeof label, "%s%s vs PyTorch (atol %.0e * %.3g)", prefix, p->names[worst], rel,
                 worst_scale);
        tu_assert_close(label, p->grad + p->offset[worst], want[worst],
                        da_shape_size(p->ndim[worst], p->shape[worst]), rel * worst_scale, 0.0);
    }
    for (int e = 0; e < p->n; e++) free(want[e]);
    free(want);
}

/* ---- command-line fixtures ---------------------------------------------- */

static int tiny_path(char *buf, size_t cap, const char *dir, const char *file)
{
    return snprintf(buf, cap, "%s/%s", dir, file) >= (int)cap ? -1 : 0;
}

int tu_tiny_weights(const char *dir)
{
    char js[1024], st[1024];
    if (mkdir(dir, 0755) && errno != EEXIST) return -1;
    da_rng rng;
    da_rng_seed(&rng, 7);
    int bad = 0;

    da_text_config tc = {.vocab_size = da_vocab_size(), .context = DA_MAX_TOKENS, .d_model = 16,
                         .n_layers = 1, .n_heads = 2, .mlp_ratio = 2, .proj_dim = 8};
    da_text_encoder *text = da_text_encoder_create(&tc, 0);
    if (!text) return -1;
    da_text_encoder_init(text, &rng);
    bad |= tiny_path(js, sizeof js, dir, "text_encoder.json") || tiny_path(st, sizeof st, dir, "text_encoder.safetensors") ||
           da_text_config_save(&tc, js) != DA_OK || da_text_encoder_save(text, st) != DA_OK;
    da_text_encoder_free(text);

    da_clip_config cc = da_clip_config_default();
    cc.n_blocks = 2;   /* 32 -> 16 -> 8 */
    cc.channels[0] = cc.channels[1] = cc.channels[2] = 8;
    cc.groups = 4;
    cc.embed_dim = tc.proj_dim;   /* CLIPScore pairs it with the text projection */
    da_clip *clip = da_clip_create(&cc, 0);
    if (!clip) return -1;
    da_clip_init(clip, &rng);
    bad |= tiny_path(js, sizeof js, dir, "clip.json") || tiny_path(st, sizeof st, dir, "clip.safetensors") ||
           da_clip_config_save(&cc, js) != DA_OK || da_clip_save(clip, st) != DA_OK;
    da_clip_free(clip);

    da_vae_config vc = da_vae_config_default();
    vc.ch[0] = vc.ch[1] = vc.ch[2] = 8;
    vc.groups = 4;
    vc.scale_factor = 1.5f;
    da_vae *vae = da_vae_create(&vc, 0);
    if (!vae) return -1;
    da_vae_init(vae, &rng);
    bad |= tiny_path(js, sizeof js, dir, "vae.json") || tiny_path(st, sizeof st, dir, "vae.safetensors") ||
           da_vae_config_save(&vc, js) != DA_OK || da_vae_save(vae, st) != DA_OK;
    da_vae_free(vae);

    da_unet_config uc = da_unet_config_default();
    uc.ch[0] = 8;
    uc.ch[1] = 16;
    uc.groups = 4;
    uc.n_heads = 2;
    uc.context_dim = tc.d_model;
    uc.time_freq_dim = 8;
    uc.time_dim = 16;
    da_unet *unet = da_unet_create(&uc, 0);
    if (!unet) return -1;
    da_unet_init(unet, &rng);
    bad |= tiny_path(js, sizeof js, dir, "unet.json") || tiny_path(st, sizeof st, dir, "unet.safetensors") ||
           da_unet_config_save(&uc, js) != DA_OK || da_unet_save(unet, st) != DA_OK;
    da_unet_free(unet);

    da_reward_net_config rc = da_reward_net_config_default();
    rc.n_blocks = 2;
    rc.channels[0] = rc.channels[1] = rc.channels[2] = 8;
    rc.groups = 4;
    rc.embed_dim = 8;
    rc.text_dim = 8;
    rc.hidden = 8;
    da_reward_net *rn = da_reward_net_create(&rc, 0);
    if (!rn) return -1;
    da_reward_net_init(rn, &rng);
    bad |= tiny_path(js, sizeof js, dir, "reward_net.json") || tiny_path(st, sizeof st, dir, "reward_net.safetensors") ||
           da_reward_net_config_save(&rc, js) != DA_OK || da_reward_net_save(rn, st) != DA_OK;
    da_reward_net_free(rn);
    return bad ? -1 : 0;
}

const char *tu_cli_path(void)
{
    static char bin[1024];
    char self[900];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    bin[0] = '\0';
    if (n <= 0) return bin;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash) return bin;
    *slash = '\0';
    snprintf(bin, sizeof bin, "%s/../dalign", self);
    if (access(bin, X_OK)) bin[0] = '\0';
    return bin;
}

const char *tu_cli_cmd(void)
{
    static char cmd[2048];
    const char *bin = tu_cli_path(), *runner = getenv("DA_TEST_RUNNER");
    if (!bin[0] || !runner || !runner[0]) return bin;
    snprintf(cmd, sizeof cmd, "%s %s", runner, bin);
    return cmd;
}

int tu_cli_argv(char **argv, int cap, const char *const *args)
{
    static char words[1024];
    const char *runner = getenv("DA_TEST_RUNNER");
    int n = 0;
    snprintf(words, sizeof words, "%s", runner ? runner : "");
    for (char *save = NULL, *w = strtok_r(words, " \t", &save); w && n < cap - 2; w = strtok_r(NULL, " \t", &save))
        argv[n++] = w;
    argv[n++] = (char *)tu_cli_path();
    for (int i = 0; args && args[i] && n < cap - 1; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    return n;
}

void tu_rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        struct stat sb;
        if (!lstat(p, &sb) && S_ISDIR(sb.st_mode)) tu_rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

char *tu_slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) fail_msg("cannot read %s: not a regular file", path);
    char *buf = malloc((size_t)len + 1);
    assert_non_null(buf);
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) fail_msg("cannot read %s: short read", path);
    fclose(f);
    buf[len] = '\0';
    if (n) *n = (size_t)len;
    return buf;
}

int tu_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = tu_slurp(a, &na), *y = tu_slurp(b, &nb);
    int same = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}
