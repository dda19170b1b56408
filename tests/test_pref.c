/* Preference trainers (src/train/pref_loss.c, pref.c, `dalign train
 * dpo|sft|rpo|kto`): the known answers (DPO = log 2 and KTO = 1/2 at
 * policy == reference, RPO with one pair = DPO bit for bit, RPO weight
 * rows), loss and every parameter gradient through a tiny UNet against
 * PyTorch (tests/oracle/pref_loss.py) and central finite differences,
 * gradient accumulation, 1 vs 2 threads, bit-identical resume, and the
 * command line's refusals of bad input. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dalign.h"
#include "train/pref.h"

static char g_dir[64];   /* temp directory: tiny weights, pairs, outputs */

static const char *tmp_path(const char *name)
{
    static char buf[8][400];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* tiny weights and 12 pairs sampled from them (2 sampler steps) */
static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_pref_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    if (tu_tiny_weights(tmp_path("weights"))) return -1;
    da_pipeline *p;
    if (da_pipeline_load(&p, tmp_path("weights"), NULL) != DA_OK) return -1;
    da_pairs_config c = da_pairs_config_default();
    c.n = 12;
    c.opts.steps = 2;
    c.batch = 4;
    da_pairs pr;
    da_status s = da_pairs_generate(p, &c, &pr);
    if (s == DA_OK) s = da_pairs_save(&pr, tmp_path("pairs.safetensors"));
    da_pairs_free(&pr);
    da_pipeline_free(p);
    return s == DA_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rm_tree(g_dir);
    return 0;
}

/* ---- known answers of the losses ----------------------------------------- */

/* policy == reference: every inside is 0, so -log sigmoid(0) = log 2 on the
 * dot (da_log1pf(1) rounds ln 2 correctly) and dL/dm_w = -dL/dm_l =
 * (1/B) (1/2) (beta/2) */
static void test_dpo_is_log2_at_reference(void **state)
{
    (void)state;
    enum { B = 5 };
    float m[2 * B], dm[2 * B];
    tu_fill(m, 2 * B, 3u, 0.01f, 0.5f);
    pref_stats st = {0};
    float loss = pref_dpo_loss(m, m + B, m, m + B, B, 2000.0f, dm, dm + B, &st);
    assert_true(loss == (float)log(2.0));
    for (int i = 0; i < B; i++) {
        assert_float_equal(dm[i], 0.2f * 0.5f * 1000.0f, 1e-3f);
        assert_true(dm[B + i] == -dm[i]);
    }
    assert_int_equal(st.correct, 0);   /* a margin of 0 is not "correct" */
    assert_true(st.margin_sum == 0.0);
}

/* g = z = 0: h = sigmoid(0) = 1/2, L = 1/2 exactly, and dL/dm = (1/N) (1/4) y beta */
static void test_kto_is_half_at_reference(void **state)
{
    (void)state;
    enum { N = 6 };
    float m[N], dm[N], y[N] = {1, 1, 1, -1, -1, -1};
    tu_fill(m, N, 4u, 0.01f, 0.5f);
    float loss = pref_kto_loss(m, m, y, N, 100.0f, dm, NULL);
    assert_true(loss == 0.5f);
    for (int k = 0; k < N; k++) assert_float_equal(dm[k], y[k] * 100.0f * 0.25f / N, 1e-5f);
}

/* one pair: w = softmax of one logit = 1, and both RPO readings reduce to
 * DPO, bit for bit (loss and gradients) */
static void test_rpo_one_pair_is_dpo(void **state)
{
    (void)state;
    for (int trial = 0; trial < 50; trial++) {
        float v[4], e[2][8];
        tu_fill(v, 4, 100u + trial, 0.0f, 0.2f);
        tu_fill(e[0], 16, 200u + trial, -1.0f, 1.0f);
        float w;
        float ew[8], el[8];
        memcpy(ew, e[0], sizeof ew);
        memcpy(el, e[1], sizeof el);
        /* unit rows, as the trainer gives */
        float nw = 0, nl = 0;
        for (int k = 0; k < 8; k++) nw += ew[k] * ew[k], nl += el[k] * el[k];
        for (int k = 0; k < 8; k++) ew[k] /= sqrtf(nw), el[k] /= sqrtf(nl);
        pref_rpo_weights(&w, ew, el, 1, 8, 0.5f);
        assert_true(w == 1.0f);
        float dw[2], dl[2], rw[2], rl[2];
        float beta = 300.0f + 100.0f * (float)trial;
        float d = pref_dpo_loss(&v[0], &v[1], &v[2], &v[3], 1, beta, &dw[0], &dl[0], NULL);
        for (int outside = 0; outside < 2; outside++) {
            float r = pref_rpo_loss(&v[0], &v[1], &v[2], &v[3], &w, 1, beta, outside, &rw[outside], &rl[outside], NULL);
            assert_memory_equal(&r, &d, sizeof d);
            assert_memory_equal(&rw[outside], &dw[0], sizeof(float));
            assert_memory_equal(&rl[outside], &dl[0], sizeof(float));
        }
    }
}

static void row_sums_to_one(const float *w, int B)
{
    for (int i = 0; i < B; i++) {
        double s = 0.0;
        for (int j = 0; j < B; j++) {
            assert_true(w[i * B + j] >= 0.0f);
            s += w[i * B + j];
        }
        assert_true(fabs(s - 1.0) < 1e-6);
    }
}

/* rows sum to 1; tau -> infinity: uniform; tau -> 0 with e_l = e_w:
 * the identity (each preferred image's own loser is the only similar one) */
static void test_rpo_weights(void **state)
{
    (void)state;
    enum { B = 6, E = 16 };
    float e[2 * B * E], w[B * B];
    tu_fill(e, 2 * B * E, 9u, -1.0f, 1.0f);
    for (int i = 0; i < 2 * B; i++) {
        float n = 0;
        for (int k = 0; k < E; k++) n += e[i * E + k] * e[i * E + k];
        for (int k = 0; k < E; k++) e[i * E + k] /= sqrtf(n);
    }
    const float taus[3] = {0.5f, 0.05f, 5.0f};
    for (int k = 0; k < 3; k++) {
        pref_rpo_weights(w, e, e + B * E, B, E, taus[k]);
        row_sums_to_one(w, B);
    }
    pref_rpo_weights(w, e, e + B * E, B, E, 1e7f);
    for (int k = 0; k < B * B; k++) assert_float_equal(w[k], 1.0f / B, 1e-6f);
    float off, ent;
    pref_rpo_weight_stats(w, B, &off, &ent);
    assert_float_equal(ent, logf((float)B), 1e-5f);   /* uniform rows: entropy log B */
    pref_rpo_weights(w, e, e, B, E, 1e-3f);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) assert_float_equal(w[i * B + j], i == j ? 1.0f : 0.0f, 1e-6f);
    pref_rpo_weight_stats(w, B, &off, &ent);
    assert_true(off < 1e-6f && ent < 1e-5f);
}

/* ---- through a tiny UNet --------------------------------------------------- */

/* the reduced config of tests/oracle/model_unet.py */
static da_unet_config tiny_config(void)
{
    da_unet_config c = da_unet_config_default();
    c.ch[0] = 8;
    c.ch[1] = 16;
    c.groups = 4;
    c.context_dim = 16;
    c.time_freq_dim = 16;
    c.time_dim = 32;
    return c;
}

enum { OB = 3, ON = 6, OLAT = 4 * 8 * 8, OT = 8, OD = 16 };

typedef struct oracle_case {
    da_safetensors *st;
    da_unet *policy, *ref;
    float *xt, *eps, *eps_kto, *t, *ctx, *w, *y;
    uint8_t keep[ON * OT];
} oracle_case;

static void oracle_open(oracle_case *c)
{
    da_unet_config cfg = tiny_config();
    c->policy = da_unet_create(&cfg, 1);
    c->ref = da_unet_create(&cfg, 0);
    assert_non_null(c->policy);
    assert_non_null(c->ref);
    assert_int_equal(da_unet_load(c->policy, "tests/oracle/model_unet_weights.safetensors"), DA_OK);
    assert_int_equal(da_unet_load(c->ref, "tests/oracle/pref_loss_ref_weights.safetensors"), DA_OK);
    c->st = tu_oracle("pref_loss");
    c->xt = tu_ref(c->st, "xt", ON * OLAT);
    c->eps = tu_ref(c->st, "eps", ON * OLAT);
    c->eps_kto = tu_ref(c->st, "eps_kto", ON * OLAT);
    c->t = tu_ref(c->st, "t", ON);
    c->ctx = tu_ref(c->st, "context", ON * OT * OD);
    c->w = tu_ref(c->st, "w", OB * OB);
    c->y = tu_ref(c->st, "y", ON);
    float *keep = tu_ref(c->st, "keep", ON * OT);
    for (int k = 0; k < ON * OT; k++) c->keep[k] = keep[k] != 0.0f;
    free(keep);
}

static void oracle_close(oracle_case *c)
{
    free(c->xt); free(c->eps); free(c->eps_kto); free(c->t); free(c->ctx); free(c->w); free(c->y);
    da_st_close(c->st);
    da_unet_free(c->policy);
    da_unet_free(c->ref);
}

/* The loss of `method` on pairs rows (winners w0.., losers l0..) of the
 * case; the policy's gradient is ADDED to its buffer (backward adds). */
static float loss_through_unet(oracle_case *c, da_pref_method method, int outside, float beta, const int *rows,
                               int B)
{
    const float *eps_all = method == DA_PREF_KTO ? c->eps_kto : c->eps;
    int N = 2 * B;
    /* gather the 2B rows into contiguous inputs */
    float *xt = malloc((size_t)N * OLAT * sizeof(float)), *eps = malloc((size_t)N * OLAT * sizeof(float));
    float *ctx = malloc((size_t)N * OT * OD * sizeof(float)), ts[ON], r[ON], m[ON], dm[ON], y[ON], w[OB * OB];
    uint8_t keep[ON * OT];
    for (int k = 0; k < N; k++) {
        int src = rows[k];
        memcpy(xt + (size_t)k * OLAT, c->xt + (size_t)src * OLAT, OLAT * sizeof(float));
        memcpy(eps + (size_t)k * OLAT, eps_all + (size_t)src * OLAT, OLAT * sizeof(float));
        memcpy(ctx + (size_t)k * OT * OD, c->ctx + (size_t)src * OT * OD, OT * OD * sizeof(float));
        memcpy(keep + k * OT, c->keep + src * OT, OT);
        ts[k] = c->t[src];
        y[k] = c->y[src];
    }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) w[i * B + j] = c->w[(rows[i]) * OB + (rows[B + j] - OB)];
    da_tape t;
    da_tape_init(&t, 1 << 22);
    int xs[4] = {N, 4, 8, 8}, cs[3] = {N, OT, OD};
    /* reference first, on its own */
    {
        da_tape rt;
        da_tape_init(&rt, 1 << 22);
        da_tape_set_grad(&rt, 0);
        da_tensor *rp = da_unet_forward(&rt, c->ref, da_leaf(&rt, xt, NULL, 4, xs), ts, da_leaf(&rt, ctx, NULL, 3, cs), keep);
        pref_mse_forward(r, rp->data, eps, N, OLAT);
        da_tape_free(&rt);
    }
    da_tensor *pred = da_unet_forward(&t, c->policy, da_leaf(&t, xt, NULL, 4, xs), ts, da_leaf(&t, ctx, NULL, 3, cs), keep);
    pref_loss_args a = {.method = method, .B = B, .beta = beta, .weight_outside = outside, .n = OLAT,
                        .eps = eps, .r = r, .w = w, .y = y, .m = m, .dm = dm};
    da_tensor *l = pref_loss_node(&t, pred, &a);
    da_tape_backward(&t, l);
    float loss = l->data[0];
    da_tape_free(&t);
    free(xt); free(eps); free(ctx);
    return loss;
}

static const int ALL_ROWS[ON] = {0, 1, 2, 3, 4, 5};

/* Loss and every parameter gradient against PyTorch. Tolerances: the loss
 * within 2e-5 relative and each gradient tensor within 1e-4 of its largest
 * reference entry, the UNet parity test's bound (f32 against f32 with
 * other summation orders through ~40 layers); beta 500 multiplies MSE
 * differences of ~1e-3, which costs about one more digit than the plain
 * UNet parity. A wrong sign, a missing factor 1/2 or 1/B, or the weight on
 * the wrong side of the log-sigmoid gives errors of order 1e-1 and up. */
static void test_losses_vs_torch(void **state)
{
    (void)state;
    oracle_case c;
    oracle_open(&c);
    float *beta_ref = tu_ref(c.st, "beta", 1);
    float beta = beta_ref[0];
    free(beta_ref);
    struct { const char *name; da_pref_method m; int outside; } cases[] = {
        {"dpo", DA_PREF_DPO, 0}, {"sft", DA_PREF_SFT, 0}, {"rpo", DA_PREF_RPO, 0},
        {"rpo_outside", DA_PREF_RPO, 1}, {"kto", DA_PREF_KTO, 0},
    };
    for (int k = 0; k < 5; k++) {
        da_params_zero_grad(&c.policy->params);
        float loss = loss_through_unet(&c, cases[k].m, cases[k].outside, beta, ALL_ROWS, OB);
        char name[64];
        snprintf(name, sizeof name, "%s.loss", cases[k].name);
        float *want = tu_ref(c.st, name, 1);
        if (fabsf(loss - want[0]) > 2e-5f * fabsf(want[0]))
            fail_msg("%s: loss %.9g, PyTorch %.9g", cases[k].name, (double)loss, (double)want[0]);
        free(want);
        snprintf(name, sizeof name, "%s.grad.", cases[k].name);
        tu_compare_params(c.st, name, &c.policy->params, 1e-4, 0.0);
    }
    oracle_close(&c);
}

/* policy == reference through the whole path (the same UNet twice):
 * m == r bit for bit, so DPO's loss is log 2 exactly */
static void test_dpo_log2_through_unet(void **state)
{
    (void)state;
    oracle_case c;
    oracle_open(&c);
    da_unet *ref = c.ref;
    c.ref = c.policy;
    float loss = loss_through_unet(&c, DA_PREF_DPO, 0, 500.0f, ALL_ROWS, OB);
    assert_true(loss == (float)log(2.0));
    loss = loss_through_unet(&c, DA_PREF_KTO, 0, 500.0f, ALL_ROWS, OB);
    assert_true(loss == 0.5f);
    c.ref = ref;
    oracle_close(&c);
}

/* Central differences of the loss in the 4 parameters with the largest
 * gradient, for DPO and both RPO readings (KTO's z is detached, so the
 * forward's derivative is not the gradient it trains with: PyTorch covers
 * KTO). Step 1e-2 on weights of size ~0.3; f32 forwards: loss rounding
 * 6e-8 / 2e-2 = 3e-6 against gradients >= 1e-2; tolerance 3% for the
 * curvature of a 40-layer net at that step. */
static void test_finite_differences(void **state)
{
    (void)state;
    oracle_case c;
    oracle_open(&c);
    da_params *p = &c.policy->params;
    struct { da_pref_method m; int outside; } cases[] = {{DA_PREF_DPO, 0}, {DA_PREF_RPO, 0}, {DA_PREF_RPO, 1}};
    float *g = malloc(p->total * sizeof(float));
    for (int k = 0; k < 3; k++) {
        da_params_zero_grad(p);
        loss_through_unet(&c, cases[k].m, cases[k].outside, 500.0f, ALL_ROWS, OB);
        memcpy(g, p->grad, p->total * sizeof(float));
        for (int pick = 0; pick < 4; pick++) {
            size_t best = 0;
            for (size_t i = 0; i < p->total; i++)
                if (fabsf(g[i]) > fabsf(g[best])) best = i;
            const float h = 1e-2f, x0 = p->data[best];
            p->data[best] = x0 + h;
            float lp = loss_through_unet(&c, cases[k].m, cases[k].outside, 500.0f, ALL_ROWS, OB);
            p->data[best] = x0 - h;
            float lm = loss_through_unet(&c, cases[k].m, cases[k].outside, 500.0f, ALL_ROWS, OB);
            p->data[best] = x0;
            double fd = ((double)lp - lm) / (2.0 * h);
            if (fabs(fd - g[best]) > 0.03 * fabs(g[best]))
                fail_msg("case %d param %zu: analytic %.6g, central difference %.6g", k, best, (double)g[best], fd);
            g[best] = 0.0f;   /* next pick: the next largest */
        }
    }
    free(g);
    oracle_close(&c);
}

/* DPO and SFT are means over pairs: the gradient of 3 pairs equals the
 * gradients of a 2-pair and a 1-pair micro-batch weighted 2/3 and 1/3
 * (what the harness's accumulation does with equal micro-batches, here
 * with unequal ones to catch a 1/B slip). f32 sums in other orders: 1e-5
 * of each tensor's scale. */
static void test_accumulation(void **state)
{
    (void)state;
    oracle_case c;
    oracle_open(&c);
    da_params *p = &c.policy->params;
    const da_pref_method ms[2] = {DA_PREF_DPO, DA_PREF_SFT};
    float *full = malloc(p->total * sizeof(float)), *acc = malloc(p->total * sizeof(float));
    for (int k = 0; k < 2; k++) {
        da_params_zero_grad(p);
        float lf = loss_through_unet(&c, ms[k], 0, 500.0f, ALL_ROWS, OB);
        memcpy(full, p->grad, p->total * sizeof(float));
        const int first[4] = {0, 1, 3, 4}, second[2] = {2, 5};
        da_params_zero_grad(p);
        float l1 = loss_through_unet(&c, ms[k], 0, 500.0f, first, 2);
        for (size_t i = 0; i < p->total; i++) acc[i] = p->grad[i] * (2.0f / 3.0f);
        da_params_zero_grad(p);
        float l2 = loss_through_unet(&c, ms[k], 0, 500.0f, second, 1);
        for (size_t i = 0; i < p->total; i++) acc[i] += p->grad[i] * (1.0f / 3.0f);
        assert_float_equal(lf, (2.0f * l1 + l2) / 3.0f, 1e-6f * fabsf(lf) + 1e-7f);
        float scale = tu_max_abs(full, p->total), err = 0.0f;
        for (size_t i = 0; i < p->total; i++) err = fmaxf(err, fabsf(full[i] - acc[i]));
        if (err > 1e-5f * scale) fail_msg("method %d: accumulated gradient off by %g (scale %g)", k, (double)err, (double)scale);
    }
    free(full);
    free(acc);
    oracle_close(&c);
}

/* ---- the trainer --------------------------------------------------------------- */

static da_status run_pref_on(da_pref_method m, const char *name, int threads, long stop_at, const char *resume,
                             const char *pairs, int swap_labels)
{
    da_trainer_config tc;
    da_pref_opts o;
    da_pref_defaults(m, &tc, &o);
    tc.total_steps = 4;
    tc.batch = 4;
    tc.warmup = 1;
    tc.lr = 1e-3f;
    tc.stop_at = stop_at;
    tc.progress = 0;
    tc.log_every = 1;
    char ckpt[400], metrics[400];
    snprintf(ckpt, sizeof ckpt, "%s/%s.ckpt", g_dir, name);
    snprintf(metrics, sizeof metrics, "%s/%s.jsonl", g_dir, name);
    tc.ckpt_path = ckpt;
    tc.metrics_path = metrics;
    o.pairs[0] = pairs;
    o.n_pairs = 1;
    o.swap_labels = swap_labels;
    o.weights_dir = tmp_path("weights");
    o.out_dir = g_dir;
    o.name = name;
    o.resume = resume;
    o.beta = 500.0f;
    da_set_threads(threads);
    da_pref_result res;
    da_status s = da_pref_run(&tc, &o, &res);
    da_set_threads(0);
    return s;
}

static da_status run_pref(da_pref_method m, const char *name, int threads, long stop_at, const char *resume)
{
    return run_pref_on(m, name, threads, stop_at, resume, tmp_path("pairs.safetensors"), 0);
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = tu_slurp(a, &na), *y = tu_slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

/* 1 vs 2 threads and stop at step 2 + resume to 4 vs a straight run: the
 * same weights file, byte for byte, for every method */
static void test_threads_and_resume(void **state)
{
    (void)state;
    const da_pref_method ms[4] = {DA_PREF_DPO, DA_PREF_SFT, DA_PREF_RPO, DA_PREF_KTO};
    for (int k = 0; k < 4; k++) {
        const char *mn = da_pref_method_name(ms[k]);
        char a[64], b[64], r[64], pa[400], pb[400], pr[400], ckpt[400];
        snprintf(a, sizeof a, "%s-t1", mn);
        snprintf(b, sizeof b, "%s-t2", mn);
        snprintf(r, sizeof r, "%s-resumed", mn);
        if (run_pref(ms[k], a, 1, 0, NULL) != DA_OK) fail_msg("%s: %s", mn, da_last_error());
        if (run_pref(ms[k], b, 2, 0, NULL) != DA_OK) fail_msg("%s: %s", mn, da_last_error());
        if (run_pref(ms[k], r, 1, 2, NULL) != DA_OK) fail_msg("%s: %s", mn, da_last_error());
        snprintf(pr, sizeof pr, "%s/%s.safetensors", g_dir, r);
        assert_false(exists(pr));   /* stopped early: only the checkpoint */
        snprintf(ckpt, sizeof ckpt, "%s/%s.ckpt", g_dir, r);
        if (run_pref(ms[k], r, 2, 0, ckpt) != DA_OK) fail_msg("%s resume: %s", mn, da_last_error());
        snprintf(pa, sizeof pa, "%s/%s.safetensors", g_dir, a);
        snprintf(pb, sizeof pb, "%s/%s.safetensors", g_dir, b);
        assert_same_file(pa, pb);
        assert_same_file(pa, pr);
        /* and the run really trained: the weights moved away from the init */
        da_unet_config cfg;
        char cj[400];
        snprintf(cj, sizeof cj, "%s/%s.json", g_dir, a);
        assert_int_equal(da_unet_config_load(&cfg, cj), DA_OK);
        da_unet *m0 = da_unet_create(&cfg, 0), *m1 = da_unet_create(&cfg, 0);
        assert_int_equal(da_unet_load(m0, tmp_path("weights/unet.safetensors")), DA_OK);
        assert_int_equal(da_unet_load(m1, pa), DA_OK);
        assert_true(memcmp(m0->params.data, m1->params.data, m0->params.total * sizeof(float)) != 0);
        da_unet_free(m0);
        da_unet_free(m1);
    }
}

static void load_params(const char *name, da_unet **out)
{
    char cj[400], cw[400];
    snprintf(cj, sizeof cj, "%s/%s.json", g_dir, name);
    snprintf(cw, sizeof cw, "%s/%s.safetensors", g_dir, name);
    da_unet_config cfg;
    assert_int_equal(da_unet_config_load(&cfg, cj), DA_OK);
    *out = da_unet_create(&cfg, 0);
    assert_int_equal(da_unet_load(*out, cw), DA_OK);
}

/* --swap-labels (the experiment's control) trains exactly as the pairs file
 * with every winner and loser exchanged does, and not as the file itself */
static void test_swap_labels(void **state)
{
    (void)state;
    da_pairs pr;
    assert_int_equal(da_pairs_load(tmp_path("pairs.safetensors"), &pr), DA_OK);
    for (int i = 0; i < pr.n; i++) pr.prob_w[i] = 1.0f - pr.prob_w[i];
    float *z = pr.latents_w; pr.latents_w = pr.latents_l; pr.latents_l = z;
    float *u = pr.utility_w; pr.utility_w = pr.utility_l; pr.utility_l = u;
    char **p = pr.prompts_w; pr.prompts_w = pr.prompts_l; pr.prompts_l = p;
    uint64_t *sd = pr.seeds_w; pr.seeds_w = pr.seeds_l; pr.seeds_l = sd;
    assert_int_equal(da_pairs_save(&pr, tmp_path("swapped.safetensors")), DA_OK);
    da_pairs_free(&pr);

    const da_pref_method ms[2] = {DA_PREF_DPO, DA_PREF_KTO};
    for (int k = 0; k < 2; k++) {
        char a[64], b[64], c[64];
        snprintf(a, sizeof a, "%s-swap-flag", da_pref_method_name(ms[k]));
        snprintf(b, sizeof b, "%s-swap-file", da_pref_method_name(ms[k]));
        snprintf(c, sizeof c, "%s-as-rated", da_pref_method_name(ms[k]));
        if (run_pref_on(ms[k], a, 1, 0, NULL, tmp_path("pairs.safetensors"), 1) != DA_OK) fail_msg("%s", da_last_error());
        if (run_pref_on(ms[k], b, 1, 0, NULL, tmp_path("swapped.safetensors"), 0) != DA_OK) fail_msg("%s", da_last_error());
        if (run_pref(ms[k], c, 1, 0, NULL) != DA_OK) fail_msg("%s", da_last_error());
        da_unet *ma, *mb, *mc;
        load_params(a, &ma);
        load_params(b, &mb);
        load_params(c, &mc);
        size_t bytes = ma->params.total * sizeof(float);
        assert_memory_equal(ma->params.data, mb->params.data, bytes);
        assert_true(memcmp(ma->params.data, mc->params.data, bytes) != 0);
        da_unet_free(ma);
        da_unet_free(mb);
        da_unet_free(mc);
    }
}

/* the health metrics are in the JSONL log, every step */
static void test_metrics_logged(void **state)
{
    (void)state;
    assert_int_equal(run_pref(DA_PREF_RPO, "metrics", 1, 0, NULL), DA_OK);
    char *log = tu_slurp(tmp_path("metrics.jsonl"), NULL);
    const char *keys[] = {"\"loss\"", "\"acc\"", "\"margin\"", "\"mse_w\"", "\"mse_l\"", "\"ref_mse_w\"",
                          "\"ref_mse_l\"", "\"gain_w\"", "\"gain_l\"", "\"grad_norm\"", "\"w_offdiag\"",
                          "\"w_entropy\""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (!strstr(log, keys[k])) fail_msg("metrics log lacks %s", keys[k]);
    int lines = 0;
    for (const char *s = log; *s; s++) lines += *s == '\n';
    assert_int_equal(lines, 4);
    free(log);
}

/* ---- the command line --------------------------------------------------------- */

static int run_cli(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", tu_cli_cmd(), args, tmp_path("cli.txt"));
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect_refusal(const char *args, int code, const char *needle)
{
    char full[4096];
    snprintf(full, sizeof full, "train dpo --weights %s --out %s --name bad --steps 1 --batch 2 -q %s",
             tmp_path("weights"), g_dir, args);
    int rc = run_cli(full);
    char *out = tu_slurp(tmp_path("cli.txt"), NULL);
    if (rc != code || !strstr(out, needle))
        fail_msg("'%s': exit %d (want %d), output: %s (want '%s')", args, rc, code, out, needle);
    free(out);
    assert_false(exists(tmp_path("bad.safetensors")));
    assert_false(exists(tmp_path("bad.json")));
    assert_false(exists(tmp_path("bad.ckpt")));
}

/* a pairs file whose latents are 3 x 8 x 8: another model's */
static void write_wrong_shape_pairs(const char *path)
{
    da_pairs pr;
    assert_int_equal(da_pairs_load(tmp_path("pairs.safetensors"), &pr), DA_OK);
    pr.channels = 2;   /* (n, 2, 8, 16): same bytes, another shape */
    pr.width *= 2;
    assert_int_equal(da_pairs_save(&pr, path), DA_OK);
    da_pairs_free(&pr);
}

static void test_cli_refusals(void **state)
{
    (void)state;
    if (!*tu_cli_cmd()) skip();
    char args[2048];
    expect_refusal("", 2, "--pairs");
    snprintf(args, sizeof args, "--pairs %s", tmp_path("missing.safetensors"));
    expect_refusal(args, 1, "missing.safetensors");
    snprintf(args, sizeof args, "--pairs %s", tmp_path("weights/unet.safetensors"));
    expect_refusal(args, 1, "unet.safetensors");
    write_wrong_shape_pairs(tmp_path("shape.safetensors"));
    snprintf(args, sizeof args, "--pairs %s", tmp_path("shape.safetensors"));
    expect_refusal(args, 1, "latents are 2x8x16");
    /* pairs from another VAE: the shipped weights' scale factor differs */
    snprintf(args, sizeof args, "--pairs %s --beta 0", tmp_path("pairs.safetensors"));
    expect_refusal(args, 2, "--beta");
    snprintf(args, sizeof args, "--pairs %s --beta -5", tmp_path("pairs.safetensors"));
    expect_refusal(args, 2, "--beta");
    snprintf(args, sizeof args, "--pairs %s --tau 0", tmp_path("pairs.safetensors"));
    expect_refusal(args, 2, "--tau");
    snprintf(args, sizeof args, "--pairs %s --bogus 1", tmp_path("pairs.safetensors"));
    expect_refusal(args, 2, "--bogus");
}

/* a pairs file made with another VAE (scale factor) is refused */
static void test_vae_mismatch(void **state)
{
    (void)state;
    da_pairs pr;
    assert_int_equal(da_pairs_load(tmp_path("pairs.safetensors"), &pr), DA_OK);
    pr.vae_scale_factor *= 1.5f;
    assert_int_equal(da_pairs_save(&pr, tmp_path("vae.safetensors")), DA_OK);
    da_pairs_free(&pr);
    da_trainer_config tc;
    da_pref_opts o;
    da_pref_defaults(DA_PREF_DPO, &tc, &o);
    tc.total_steps = 1;
    tc.batch = 2;
    tc.progress = 0;
    o.pairs[0] = tmp_path("vae.safetensors");
    o.n_pairs = 1;
    o.weights_dir = tmp_path("weights");
    o.out_dir = g_dir;
    o.name = "vae-mismatch";
    assert_int_equal(da_pref_run(&tc, &o, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "scale factor"));
    assert_false(exists(tmp_path("vae-mismatch.safetensors")));
}

/* an existing NAME.* is never replaced without --force */
static void test_refuses_to_overwrite(void **state)
{
    (void)state;
    if (!*tu_cli_cmd()) skip();
    char args[2048];
    snprintf(args, sizeof args, "train sft --weights %s --out %s --name keep --steps 1 --batch 2 -q --pairs %s",
             tmp_path("weights"), g_dir, tmp_path("pairs.safetensors"));
    assert_int_equal(run_cli(args), 0);
    size_t n0;
    char *before = tu_slurp(tmp_path("keep.safetensors"), &n0);
    assert_int_equal(run_cli(args), 1);
    char *out = tu_slurp(tmp_path("cli.txt"), NULL);
    assert_non_null(strstr(out, "--force"));
    free(out);
    size_t n1;
    char *after = tu_slurp(tmp_path("keep.safetensors"), &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    char forced[2100];
    snprintf(forced, sizeof forced, "%s --force --seed 7", args);
    assert_int_equal(run_cli(forced), 0);
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dpo_is_log2_at_reference),
        cmocka_unit_test(test_kto_is_half_at_reference),
        cmocka_unit_test(test_rpo_one_pair_is_dpo),
        cmocka_unit_test(test_rpo_weights),
        cmocka_unit_test(test_losses_vs_torch),
        cmocka_unit_test(test_dpo_log2_through_unet),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_accumulation),
        cmocka_unit_test(test_threads_and_resume),
        cmocka_unit_test(test_metrics_logged),
        cmocka_unit_test(test_vae_mismatch),
        cmocka_unit_test(test_cli_refusals),
        cmocka_unit_test(test_refuses_to_overwrite),
        cmocka_unit_test(test_swap_labels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
