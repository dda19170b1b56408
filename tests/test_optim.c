/* Optimisation utilities: AdamW against torch.optim.AdamW trajectories,
 * gradient norm/clipping against clip_grad_norm_, EMA, the LR schedule, and
 * bit-identical results for 1 and 2 threads. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADAM_N 200
#define ADAM_STEPS 10

/* Distance in units in the last place between two finite floats (the
 * number of representable floats between them). */
static int64_t ulp_diff(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    /* map the sign-magnitude bit patterns onto a monotonic integer line */
    int64_t la = ia < 0 ? (int64_t)INT32_MIN - ia : ia;
    int64_t lb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
    return la > lb ? la - lb : lb - la;
}

static int64_t max_ulp(const float *a, const float *b, size_t n)
{
    int64_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t d = ulp_diff(a[i], b[i]);
        if (d > worst) worst = d;
    }
    return worst;
}

static void test_ulp_diff(void **state)
{
    (void)state;
    assert_int_equal(ulp_diff(1.0f, 1.0f), 0);
    assert_int_equal(ulp_diff(1.0f, nextafterf(1.0f, 2.0f)), 1);
    assert_int_equal(ulp_diff(-0.0f, 0.0f), 0);
    assert_int_equal(ulp_diff(-1e-45f, 1e-45f), 2);
    assert_int_equal(ulp_diff(-1.0f, nextafterf(-1.0f, -2.0f)), 1);
}

static da_adamw read_hparams(da_safetensors *st, const char *cfg)
{
    char name[128];
    snprintf(name, sizeof name, "adamw.%s.hparams", cfg);
    float *h = tu_ref(st, name, 5);
    da_adamw a = {.lr = h[0], .beta1 = h[1], .beta2 = h[2], .eps = h[3], .weight_decay = h[4]};
    free(h);
    return a;
}

/* Replays the 10 steps of one config, chained from p0 and zero moments.
 *
 * Against torch's portable kernels (ATEN_CPU_CAPABILITY=default) the final
 * p, m, v must be bit-identical: same float ops in the same order.
 *
 * Against the machine's own dispatch (AVX2 fuses the m and v multiply-adds
 * into FMAs; we never fuse) each step's state must stay within a few float
 * rounding errors of the state's scale. Measured on AVX2 torch 1.13 after 10
 * steps: |err| <= 1.2e-7 for p and m (1 ulp at 1.0; large ulp counts only
 * where p or m cancels to near 0), v within 2 ulp. Tolerances are ~4x that:
 *   p: atol 5e-7          params ~N(0,1): 4 ulp at 1.0, 2 ulp at 2..4
 *   m: atol 5e-7, rtol 2^-22   |m| up to ~3, error from 1 fused rounding/step
 *   v: rtol 2^-21 (4 ulp) v is a sum of positive terms: no cancellation
 * A wrong bias correction or operation order moves p by >= 1e-5. */
static void adamw_case(da_safetensors *st, const char *cfg_name)
{
    da_adamw cfg = read_hparams(st, cfg_name);
    float *p = tu_ref(st, "adamw.p0", ADAM_N);
    float *grads = tu_ref(st, "adamw.grads", ADAM_STEPS * ADAM_N);
    float *m = calloc(ADAM_N, sizeof *m), *v = calloc(ADAM_N, sizeof *v);
    char name[160];
    float *ref[3];
    const char *what[3] = {"p", "m", "v"};
    const double atol[3] = {5e-7, 5e-7, 0.0}, rtol[3] = {0.0, 0x1p-22, 0x1p-21};
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "adamw.%s.%s", cfg_name, what[k]);
        ref[k] = tu_ref(st, name, ADAM_STEPS * ADAM_N);
    }
    const float *mine[3] = {p, m, v};
    int64_t worst_ulp[3] = {0, 0, 0};
    double worst_abs[3] = {0, 0, 0};
    for (long s = 0; s < ADAM_STEPS; s++) {
        da_adamw_step(p, grads + s * ADAM_N, m, v, ADAM_N, s + 1, &cfg);
        for (int k = 0; k < 3; k++) {
            const float *want = ref[k] + s * ADAM_N;
            snprintf(name, sizeof name, "adamw %s: %s after step %ld vs torch (own dispatch)",
                     cfg_name, what[k], s + 1);
            tu_assert_close(name, mine[k], want, ADAM_N, atol[k], rtol[k]);
            int64_t u = max_ulp(mine[k], want, ADAM_N);
            if (u > worst_ulp[k]) worst_ulp[k] = u;
            for (int i = 0; i < ADAM_N; i++)
                if (fabs((double)mine[k][i] - want[i]) > worst_abs[k]) worst_abs[k] = fabs((double)mine[k][i] - want[i]);
        }
    }
    print_message("adamw %s vs torch (own dispatch), worst over %d steps: "
                  "p %lld ulp (|err| %.2g), m %lld ulp (|err| %.2g), v %lld ulp\n",
                  cfg_name, ADAM_STEPS, (long long)worst_ulp[0], worst_abs[0],
                  (long long)worst_ulp[1], worst_abs[1], (long long)worst_ulp[2]);
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "adamw.%s.portable.%s", cfg_name, what[k]);
        float *want = tu_ref(st, name, ADAM_N);
        snprintf(name, sizeof name, "adamw %s: %s after %d steps vs torch portable kernels",
                 cfg_name, what[k], ADAM_STEPS);
        tu_assert_bits(name, mine[k], want, ADAM_N);
        free(want);
        free(ref[k]);
    }
    free(p); free(grads); free(m); free(v);
}

static void test_adamw_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("optim");
    adamw_case(st, "small");
    adamw_case(st, "large");
    da_st_close(st);
}

/* Step 1 without weight decay in closed form: m = (1-b1) g, v = (1-b2) g^2,
 * so the update is -lr * g / (|g| + eps'): a step of ~lr against sign(g).
 * Independent of torch; 1e-6 relative covers the float rounding of the
 * bias corrections and the sqrt (a few ulp). */
static void test_adamw_first_step(void **state)
{
    (void)state;
    enum { n = 64 };
    float p[n], g[n], m[n] = {0}, v[n] = {0}, p0[n];
    tu_fill(p, n, 1u, -1.0f, 1.0f);
    tu_fill(g, n, 2u, -2.0f, 2.0f);
    memcpy(p0, p, sizeof p);
    da_adamw cfg = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f};
    da_adamw_step(p, g, m, v, n, 1, &cfg);
    float want[n];
    for (int i = 0; i < n; i++)
        want[i] = (float)((double)p0[i] - 0.01 * (double)g[i] / (fabs((double)g[i]) + 1e-8));
    tu_assert_close("adamw first step", p, want, n, 1e-8, 1e-6);
}

/* Elementwise loops: 1 vs 2 threads must give the same bits. n is large
 * enough that each thread gets a share. */
static void test_adamw_threads(void **state)
{
    (void)state;
    const size_t n = 10007;
    float *g = tu_alloc_fill(n, 3u, -1.0f, 1.0f);
    float *p[2], *m[2], *v[2];
    da_adamw cfg = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f};
    int saved = da_get_threads();
    for (int t = 0; t < 2; t++) {
        da_set_threads(t + 1);
        p[t] = tu_alloc_fill(n, 4u, -1.0f, 1.0f);
        m[t] = calloc(n, sizeof(float));
        v[t] = calloc(n, sizeof(float));
        for (long s = 1; s <= 3; s++) da_adamw_step(p[t], g, m[t], v[t], n, s, &cfg);
    }
    da_set_threads(saved);
    tu_assert_bits("adamw p, 1 vs 2 threads", p[0], p[1], n);
    tu_assert_bits("adamw m, 1 vs 2 threads", m[0], m[1], n);
    tu_assert_bits("adamw v, 1 vs 2 threads", v[0], v[1], n);
    for (int t = 0; t < 2; t++) { free(p[t]); free(m[t]); free(v[t]); }
    free(g);
}

/* naive serial double sum: the same quantity in another order */
static double norm_ref(const float *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return sqrt(s);
}

/* Sizes cross the chunk (4096) and batch (256 chunks) boundaries. Double
 * sums of positive terms in two orders agree to ~n * 2^-53 relative: 1e-12. */
static void test_grad_norm(void **state)
{
    (void)state;
    assert_true(da_grad_norm(NULL, 0) == 0.0);
    float three_four[2] = {3.0f, -4.0f};
    assert_true(da_grad_norm(three_four, 2) == 5.0);
    const size_t sizes[] = {1, 4095, 4096, 4097, 3 * 4096 + 17, 256 * 4096 + 5000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        float *g = tu_alloc_fill(n, 5u + (uint32_t)k, -1.0f, 1.0f);
        double want = norm_ref(g, n), got = da_grad_norm(g, n);
        if (fabs(got - want) > 1e-12 * want)
            fail_msg("grad_norm n=%zu: %.17g vs serial %.17g", n, got, want);
        int saved = da_get_threads();
        da_set_threads(1);
        double n1 = da_grad_norm(g, n);
        da_set_threads(2);
        double n2 = da_grad_norm(g, n);
        da_set_threads(saved);
        if (memcmp(&n1, &n2, sizeof n1) != 0)
            fail_msg("grad_norm n=%zu: 1 thread %.17g, 2 threads %.17g", n, n1, n2);
        free(g);
    }
}

/* clip_grad_norm_: torch sums the squares in float, we in double; its norm
 * is within a few float ulp of ours (3e-7 relative = 2.5 ulp). The clipping
 * coefficient inherits that, so the clipped grads get the same bound. */
static void test_grad_clip_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("optim");
    const size_t n = 2048;
    float *g0 = tu_ref(st, "clip.g", n);
    float *g = malloc(n * sizeof *g);

    float *max_norm = tu_ref(st, "clip.clips.max_norm", 1);
    float *norm = tu_ref(st, "clip.clips.norm", 1);
    float *want = tu_ref(st, "clip.clips.out", n);
    memcpy(g, g0, n * sizeof *g);
    double got = da_grad_clip(g, n, max_norm[0]);
    float got_f = (float)got;
    tu_assert_close("clip (clipping): pre-clip norm vs torch", &got_f, norm, 1, 0.0, 3e-7);
    assert_true(fabs(got - norm_ref(g0, n)) <= 1e-12 * got); /* the norm before clipping */
    tu_assert_close("clip (clipping): grads vs torch", g, want, n, 0.0, 3e-7);
    /* and the result is at the requested norm, short by the 1e-6 that
     * torch adds to the denominator (relative 1e-6 / norm ~ 1.1e-6) */
    double after = da_grad_norm(g, n);
    assert_true(after < max_norm[0] && after > max_norm[0] * (1.0 - 2e-6));
    free(max_norm); free(norm); free(want);

    max_norm = tu_ref(st, "clip.keeps.max_norm", 1);
    norm = tu_ref(st, "clip.keeps.norm", 1);
    memcpy(g, g0, n * sizeof *g);
    got = da_grad_clip(g, n, max_norm[0]);
    got_f = (float)got;
    tu_assert_close("clip (no clipping): norm vs torch", &got_f, norm, 1, 0.0, 3e-7);
    tu_assert_bits("clip (no clipping): grads untouched", g, g0, n); /* torch multiplies by 1.0 */
    free(max_norm); free(norm);
    free(g); free(g0);
    da_st_close(st);
}

static void test_grad_clip_threads(void **state)
{
    (void)state;
    const size_t n = 3 * 4096 + 123;
    float *g[2];
    double norm[2];
    int saved = da_get_threads();
    for (int t = 0; t < 2; t++) {
        da_set_threads(t + 1);
        g[t] = tu_alloc_fill(n, 6u, -1.0f, 1.0f);
        norm[t] = da_grad_clip(g[t], n, 1.0f);
    }
    da_set_threads(saved);
    assert_true(norm[0] > 1.0); /* the case must clip */
    assert_memory_equal(&norm[0], &norm[1], sizeof(double));
    tu_assert_bits("clip grads, 1 vs 2 threads", g[0], g[1], n);
    free(g[0]); free(g[1]);
}

/* EMA against the formula evaluated in double: the float version rounds
 * twice (products) plus once (sum): 2e-7 relative of the larger term. */
static void test_ema(void **state)
{
    (void)state;
    const size_t n = 5000;
    float *ema = tu_alloc_fill(n, 7u, -1.0f, 1.0f);
    float *ema0 = malloc(n * sizeof *ema0), *want = malloc(n * sizeof *want);
    float *p = tu_alloc_fill(n, 8u, -1.0f, 1.0f);
    memcpy(ema0, ema, n * sizeof *ema);
    const float decay = 0.999f;
    for (size_t i = 0; i < n; i++)
        want[i] = (float)((double)decay * ema0[i] + (1.0 - (double)decay) * p[i]);
    da_ema_update(ema, p, n, decay);
    tu_assert_close("ema decay 0.999 vs double formula", ema, want, n, 2e-7, 2e-7);

    memcpy(ema, ema0, n * sizeof *ema);
    da_ema_update(ema, p, n, 1.0f);
    tu_assert_bits("ema decay 1 keeps ema", ema, ema0, n);
    da_ema_update(ema, p, n, 0.0f);
    tu_assert_bits("ema decay 0 copies params", ema, p, n);

    /* 1 vs 2 threads */
    float *e2 = malloc(n * sizeof *e2);
    int saved = da_get_threads();
    memcpy(ema, ema0, n * sizeof *ema);
    memcpy(e2, ema0, n * sizeof *e2);
    da_set_threads(1);
    da_ema_update(ema, p, n, 0.9f);
    da_set_threads(2);
    da_ema_update(e2, p, n, 0.9f);
    da_set_threads(saved);
    tu_assert_bits("ema, 1 vs 2 threads", ema, e2, n);
    free(e2); free(ema); free(ema0); free(want); free(p);
}

/* LR values are computed in double and rounded once to float: compare to
 * hand-computed values rounded the same way (exact, or 1 ulp from cos). */
static void assert_lr(const char *what, float got, double want)
{
    float w = (float)want;
    tu_assert_close(what, &got, &w, 1, 0.0, 1.2e-7);
}

static void test_lr_schedule(void **state)
{
    (void)state;
    const float base = 1e-3f, lo = 1e-5f;
    /* warmup 10: step 0 -> base/10, step 9 -> base, 0-based */
    assert_lr("warmup start", da_lr_at(DA_LR_COSINE, base, lo, 0, 10, 110), base / 10.0);
    assert_lr("warmup step 4", da_lr_at(DA_LR_CONSTANT, base, lo, 4, 10, 110), base * 5.0 / 10.0);
    assert_lr("end of warmup", da_lr_at(DA_LR_COSINE, base, lo, 9, 10, 110), base);
    assert_lr("cosine start", da_lr_at(DA_LR_COSINE, base, lo, 10, 10, 110), base);
    assert_lr("cosine midpoint", da_lr_at(DA_LR_COSINE, base, lo, 60, 10, 110), ((double)base + lo) / 2.0);
    assert_lr("cosine quarter", da_lr_at(DA_LR_COSINE, base, lo, 35, 10, 110),
              lo + 0.5 * ((double)base - lo) * (1.0 + cos(M_PI * 0.25)));
    assert_lr("cosine end", da_lr_at(DA_LR_COSINE, base, lo, 110, 10, 110), lo);
    assert_lr("beyond the end", da_lr_at(DA_LR_COSINE, base, lo, 5000, 10, 110), lo);
    assert_lr("constant after warmup", da_lr_at(DA_LR_CONSTANT, base, lo, 5000, 10, 110), base);
    /* no warmup: step 0 is already base (no division by zero) */
    assert_lr("warmup 0, constant", da_lr_at(DA_LR_CONSTANT, base, lo, 0, 0, 100), base);
    assert_lr("warmup 0, cosine start", da_lr_at(DA_LR_COSINE, base, lo, 0, 0, 100), base);
    assert_lr("warmup 0, cosine mid", da_lr_at(DA_LR_COSINE, base, lo, 50, 0, 100), ((double)base + lo) / 2.0);
    /* total == warmup: the cosine has no length, lr drops to min after warmup */
    assert_lr("total == warmup, in warmup", da_lr_at(DA_LR_COSINE, base, lo, 4, 10, 10), base / 2.0);
    assert_lr("total == warmup, after", da_lr_at(DA_LR_COSINE, base, lo, 10, 10, 10), lo);
    assert_lr("total == warmup == 0", da_lr_at(DA_LR_COSINE, base, lo, 0, 0, 0), lo);
    /* negative step counts as 0 */
    assert_lr("negative step", da_lr_at(DA_LR_COSINE, base, lo, -3, 10, 110), base / 10.0);
    /* monotone non-increasing over the cosine */
    float prev = da_lr_at(DA_LR_COSINE, base, lo, 10, 10, 110);
    for (long s = 11; s <= 120; s++) {
        float cur = da_lr_at(DA_LR_COSINE, base, lo, s, 10, 110);
        if (cur > prev) fail_msg("cosine lr rises at step %ld: %.9g > %.9g", s, cur, prev);
        prev = cur;
    }
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ulp_diff),
        cmocka_unit_test(test_adamw_vs_torch),
        cmocka_unit_test(test_adamw_first_step),
        cmocka_unit_test(test_adamw_threads),
        cmocka_unit_test(test_grad_norm),
        cmocka_unit_test(test_grad_clip_vs_torch),
        cmocka_unit_test(test_grad_clip_threads),
        cmocka_unit_test(test_ema),
        cmocka_unit_test(test_lr_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
