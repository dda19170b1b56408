/* Training harness: bit-exact resume (clean stop and signal), refused
 * checkpoints, gradient accumulation == full batch, same bits for 1 and 2
 * threads, the JSONL metrics log, the progress bar, config validation.
 *
 * The model is a tiny MLP (4 -> 16 -> 2, SiLU) regressing a fixed function
 * of Gaussian inputs plus noise, built with da_params like every model. */
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "train/pretrain.h"

#define IN 4
#define OUT 2
#define HIDDEN 16
#define STEPS 20
#define MAX_MICRO 4

static char tmp_dir[64];

static const char *tmp_path(const char *name)
{
    static char buf[8][400];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp_dir, name);
    return buf[k];
}

/* ------------------------------------------------------------------------ */
/* The model and its step function                                          */
/* ------------------------------------------------------------------------ */

static da_params *mlp_create(int hidden, uint64_t init_seed)
{
    da_params *p = malloc(sizeof *p);
    da_params_init(p);
    da_params_add(p, "fc1.weight", 2, (int[]){hidden, IN});
    da_params_add(p, "fc1.bias", 1, (int[]){hidden});
    da_params_add(p, "fc2.weight", 2, (int[]){OUT, hidden});
    da_params_add(p, "fc2.bias", 1, (int[]){OUT});
    assert_int_equal(da_params_alloc(p, 1), DA_OK);
    da_rng rng;
    da_rng_seed(&rng, init_seed);
    for (int i = 0; i < p->n; i++) {
        int fan_in = p->ndim[i] == 2 ? p->shape[i][1] : (i == 1 ? IN : hidden);
        da_init_uniform(&rng, p->data + p->offset[i], da_shape_size(p->ndim[i], p->shape[i]),
                        1.0f / sqrtf((float)fan_in));
    }
    return p;
}

static void mlp_free(da_params *p)
{
    da_params_free(p);
    free(p);
}

typedef struct run_ctx {
    float micro_loss[STEPS + 1][MAX_MICRO]; /* [step done before][micro] */
    const float *fixed_x;                   /* (steps, batch, IN) or NULL: draw from data_rng */
    long raise_at;                          /* raise(raise_sig) raise_count times during this step (1-based) */
    int raise_sig, raise_count;
    long nan_at;                            /* report a NaN loss at this step (1-based) */
} run_ctx;

/* target = (sin x0 + x1 x2, x3^2 - 1) */
static void target_of(const float *x, float *y)
{
    y[0] = sinf(x[0]) + x[1] * x[2];
    y[1] = x[3] * x[3] - 1.0f;
}

static da_status mlp_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    run_ctx *ctx = user;
    const int B = tr->micro_size;
    float *x = da_arena_alloc(&t->arena, (size_t)B * IN * sizeof(float));
    float *y = da_arena_alloc(&t->arena, (size_t)B * OUT * sizeof(float));
    if (ctx->fixed_x) {
        const float *src = ctx->fixed_x + ((size_t)tr->step * tr->cfg.batch + (size_t)micro * B) * IN;
        memcpy(x, src, (size_t)B * IN * sizeof(float));
        for (int b = 0; b < B; b++) target_of(x + b * IN, y + b * OUT);
    } else {
        /* B*IN >= 16 takes randn's vector path; the noise (B*OUT < 16 values
         * plus one on micro 0) takes the scalar path, so the cached second
         * Box-Muller value is live at odd step boundaries */
        float noise[MAX_MICRO * 8 + 1], jitter = 0.0f;
        da_randn(&tr->data_rng, x, (size_t)B * IN);
        da_randn(&tr->noise_rng, noise, (size_t)B * OUT);
        if (micro == 0) da_randn(&tr->noise_rng, &jitter, 1);
        for (int b = 0; b < B; b++) {
            target_of(x + b * IN, y + b * OUT);
            for (int j = 0; j < OUT; j++) y[b * OUT + j] += 0.1f * noise[b * OUT + j] * (1.0f + 0.1f * jitter);
        }
    }
    const da_params *p = tr->params;
    da_tensor *h = da_leaf(t, x, NULL, 2, (int[]){B, IN});
    h = da_silu(t, da_linear(t, h, da_params_leaf(t, p, "fc1.weight"), da_params_leaf(t, p, "fc1.bias")));
    da_tensor *pred = da_linear(t, h, da_params_leaf(t, p, "fc2.weight"), da_params_leaf(t, p, "fc2.bias"));
    da_tensor *l = da_mse(t, pred, da_leaf(t, y, NULL, 2, (int[]){B, OUT}));
    da_tape_backward(t, l);
    *loss = l->data[0];
    if (tr->step + 1 == ctx->nan_at) *loss = NAN;
    double mean = 0.0;
    for (size_t i = 0; i < pred->size; i++) mean += pred->data[i];
    da_trainer_metric(tr, "pred_mean", mean / (double)pred->size);
    if (tr->step < STEPS) ctx->micro_loss[tr->step][micro] = *loss;
    if (tr->step + 1 == ctx->raise_at && micro == 0)
        for (int i = 0; i < ctx->raise_count; i++) raise(ctx->raise_sig);
    return DA_OK;
}

static da_trainer_config base_cfg(void)
{
    da_trainer_config c = da_trainer_defaults();
    c.name = "mlp";
    c.total_steps = STEPS;
    c.batch = 8;
    c.micro_batches = 2;
    c.lr = 1e-2f;
    c.min_lr = 1e-4f;
    c.warmup = 3;
    c.schedule = DA_LR_COSINE;
    c.weight_decay = 0.01f;
    c.clip = 0.5f;      /* binds on some steps: the clipped path is exercised */
    c.ema_decay = 0.9f;
    c.seed = 7;
    c.progress = 0;
    return c;
}

/* Final state of a run, copied out */
typedef struct snapshot {
    float *p, *m, *v, *ema;
    size_t n;
    long step;
} snapshot;

static snapshot snap(const da_trainer *tr)
{
    size_t n = tr->params->total, b = n * sizeof(float);
    snapshot s = {malloc(b), malloc(b), malloc(b), malloc(b), n, tr->step};
    memcpy(s.p, tr->params->data, b);
    memcpy(s.m, tr->m, b);
    memcpy(s.v, tr->v, b);
    memcpy(s.ema, tr->ema, b);
    return s;
}

static void snap_free(snapshot *s) { free(s->p); free(s->m); free(s->v); free(s->ema); }

static void assert_same_state(const char *what, const da_trainer *tr, const snapshot *want)
{
    char msg[128];
    assert_int_equal(tr->step, want->step);
    snprintf(msg, sizeof msg, "%s: params", what);
    tu_assert_bits(msg, tr->params->data, want->p, want->n);
    snprintf(msg, sizeof msg, "%s: adam m", what);
    tu_assert_bits(msg, tr->m, want->m, want->n);
    snprintf(msg, sizeof msg, "%s: adam v", what);
    tu_assert_bits(msg, tr->v, want->v, want->n);
    snprintf(msg, sizeof msg, "%s: ema", what);
    tu_assert_bits(msg, tr->ema, want->ema, want->n);
}

/* The uninterrupted reference run: 20 steps, metrics to ref.jsonl. */
static snapshot ref_state;
static run_ctx ref_ctx;

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/dalign_trainer_XXXXXX");
    if (!mkdtemp(tmp_dir)) return -1;
    da_trainer_config c = base_cfg();
    c.metrics_path = tmp_path("ref.jsonl");
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    if (da_trainer_create(&tr, &c, p) != DA_OK) return -1;
    memset(&ref_ctx, 0, sizeof ref_ctx);
    if (da_trainer_run(tr, mlp_step, &ref_ctx) != DA_OK || tr->step != STEPS) return -1;
    ref_state = snap(tr);
    da_trainer_free(tr);
    mlp_free(p);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    snap_free(&ref_state);
    DIR *d = opendir(tmp_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tmp_path(e->d_name));
        closedir(d);
    }
    rmdir(tmp_dir);
    return 0;
}

/* A fresh model (initialised from another seed, so only a working resume
 * can produce the reference bits) resumed from `ckpt` and run to the end. */
static da_trainer *resume_and_finish(const char *ckpt, const char *metrics, run_ctx *ctx, da_params **p_out)
{
    da_trainer_config c = base_cfg();
    c.ckpt_path = ckpt;
    c.metrics_path = metrics;
    da_params *p = mlp_create(HIDDEN, 999);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    if (da_trainer_resume(tr, ckpt) != DA_OK) fail_msg("resume: %s", da_last_error());
    assert_true(tr->resumed);
    assert_int_equal(da_trainer_run(tr, mlp_step, ctx), DA_OK);
    *p_out = p;
    return tr;
}

static void assert_losses_equal(const run_ctx *got, long from, long to)
{
    for (long s = from; s < to; s++)
        for (int k = 0; k < 2; k++)
            if (memcmp(&got->micro_loss[s][k], &ref_ctx.micro_loss[s][k], sizeof(float)))
                fail_msg("step %ld micro %d: loss %.9g, uninterrupted run %.9g", s + 1, k,
                         (double)got->micro_loss[s][k], (double)ref_ctx.micro_loss[s][k]);
}

/* ------------------------------------------------------------------------ */
/* Resume                                                                   */
/* ------------------------------------------------------------------------ */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strdup(buf);
}

/* the log without its wall-clock field: ,"time_s":<number> removed */
static char *strip_time(char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        if (!strncmp(r, ",\"time_s\":", 10)) {
            r += 10;
            while (*r && *r != ',' && *r != '}') r++;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
    return s;
}

static void append(const char *path, const char *text)
{
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* 10 steps, stop, free everything, resume for 10 more: the same bits as 20
 * straight; and the metrics log ends up equal to the uninterrupted one even
 * though a "kill" left lines past the checkpoint and a torn line behind. */
static void test_resume_bit_identical(void **state)
{
    (void)state;
    const char *ckpt = tmp_path("a.ckpt"), *log = tmp_path("a.jsonl");
    da_trainer_config c = base_cfg();
    c.stop_at = 10;
    c.ckpt_path = ckpt;
    c.metrics_path = log;
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx1 = {0};
    assert_int_equal(da_trainer_run(tr, mlp_step, &ctx1), DA_OK);
    assert_int_equal(tr->step, 10);
    assert_int_equal(tr->stop_signal, 0);
    assert_int_equal(da_trainer_exit_code(tr, DA_OK), 0);
    assert_losses_equal(&ctx1, 0, 10);
    da_trainer_free(tr);
    mlp_free(p);

    /* the checkpoint's layout, as docs/training.md describes it */
    da_safetensors *st;
    assert_int_equal(da_st_open(ckpt, &st), DA_OK);
    const char *names[] = {"param.fc1.weight", "adam_m.fc1.weight", "adam_v.fc2.bias", "ema.fc2.weight"};
    for (int i = 0; i < 4; i++)
        if (!da_st_find(st, names[i])) fail_msg("checkpoint lacks %s", names[i]);
    assert_int_equal(st->n_tensors, 16);
    assert_string_equal(da_st_meta_get(st, "step"), "10");
    assert_string_equal(da_st_meta_get(st, "config.lr"), "0.00999999978");
    assert_string_equal(da_st_meta_get(st, "format"), "dalign.trainer.v1");
    da_st_close(st);

    /* what a kill after step 12 would leave: lines past the checkpoint, a torn line */
    append(log, "{\"step\":11,\"loss\":1}\n{\"step\":12,\"loss\":2}\n{\"step\":13,\"lo");

    run_ctx ctx2 = {0};
    tr = resume_and_finish(ckpt, log, &ctx2, &p);
    assert_same_state("stop at 10 + resume", tr, &ref_state);
    assert_losses_equal(&ctx2, 10, STEPS);
    da_trainer_free(tr);
    mlp_free(p);

    char *got = slurp(log), *want = slurp(tmp_path("ref.jsonl"));
    assert_non_null(got);
    assert_non_null(want);
    assert_string_equal(strip_time(got), strip_time(want));
    free(got);
    free(want);
}

/* raise(SIGINT) twice inside step 7: the run stops after that step with a
 * checkpoint and exit code 130, puts the old handler back, and resuming
 * reaches the reference bits. The noise RNG holds a cached normal at step
 * 7, so its bit-exact storage is exercised. SIGTERM gives 143. A signal
 * ignored when the run starts stays ignored. */
static void test_signal_resume(void **state)
{
    (void)state;
    const char *ckpt = tmp_path("sig.ckpt");
    /* the harness leaves an ignored signal ignored (a background job of a
     * script starts with SIGINT ignored): make sure ours are not */
    struct sigaction dfl, before, after, old_int, old_term;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, &old_int);
    sigaction(SIGTERM, &dfl, &old_term);
    sigaction(SIGINT, NULL, &before);

    da_trainer_config c = base_cfg();
    c.ckpt_path = ckpt;
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx = {.raise_at = 7, .raise_sig = SIGINT, .raise_count = 2};
    da_status s = da_trainer_run(tr, mlp_step, &ctx);
    assert_int_equal(s, DA_OK);
    assert_int_equal(tr->stop_signal, SIGINT);
    assert_int_equal(tr->step, 7);
    assert_int_equal(da_trainer_exit_code(tr, s), 130);
    assert_int_equal(tr->noise_rng.has_next_normal, 1);
    sigaction(SIGINT, NULL, &after);
    assert_ptr_equal((void *)after.sa_handler, (void *)before.sa_handler);
    da_trainer_free(tr);
    mlp_free(p);

    run_ctx ctx2 = {0};
    tr = resume_and_finish(ckpt, NULL, &ctx2, &p);
    assert_same_state("SIGINT at 7 + resume", tr, &ref_state);
    assert_losses_equal(&ctx2, 7, STEPS);
    da_trainer_free(tr);
    mlp_free(p);

    p = mlp_create(HIDDEN, 1);
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx3 = {.raise_at = 3, .raise_sig = SIGTERM, .raise_count = 1};
    s = da_trainer_run(tr, mlp_step, &ctx3);
    assert_int_equal(da_trainer_exit_code(tr, s), 143);
    da_safetensors *st;
    assert_int_equal(da_st_open(ckpt, &st), DA_OK);
    assert_string_equal(da_st_meta_get(st, "step"), "3");
    da_st_close(st);
    da_trainer_free(tr);
    mlp_free(p);

    /* an ignored SIGINT stays ignored: the run goes on to its end */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGINT, &ign, NULL);
    c.ckpt_path = NULL;
    c.stop_at = 4;
    p = mlp_create(HIDDEN, 1);
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx4 = {.raise_at = 2, .raise_sig = SIGINT, .raise_count = 1};
    assert_int_equal(da_trainer_run(tr, mlp_step, &ctx4), DA_OK);
    assert_int_equal(tr->stop_signal, 0);
    assert_int_equal(tr->step, 4);
    sigaction(SIGINT, NULL, &after);
    assert_ptr_equal((void *)after.sa_handler, (void *)SIG_IGN);
    da_trainer_free(tr);
    mlp_free(p);

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
}

/* A checkpoint of another model shape, another config or another kind of
 * file is refused with a message naming the problem, and the trainer is
 * left untouched. */
static void test_resume_refused(void **state)
{
    (void)state;
    const char *ckpt = tmp_path("r.ckpt"), *weights = tmp_path("r.weights");
    da_trainer_config c = base_cfg();
    c.stop_at = 2;
    c.ckpt_path = ckpt;
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx = {0};
    assert_int_equal(da_trainer_run(tr, mlp_step, &ctx), DA_OK);
    assert_int_equal(da_trainer_save_weights(tr, weights, 1, NULL, 0), DA_OK);
    da_trainer_free(tr);
    mlp_free(p);

    /* hidden 8 instead of 16 */
    da_params *small = mlp_create(8, 1);
    float *before = malloc(small->total * sizeof(float));
    memcpy(before, small->data, small->total * sizeof(float));
    assert_int_equal(da_trainer_create(&tr, &c, small), DA_OK);
    assert_int_not_equal(da_trainer_resume(tr, ckpt), DA_OK);
    const char *msg = da_last_error();
    if (!strstr(msg, "param.fc1.weight") || !strstr(msg, "[16, 4]") || !strstr(msg, "[8, 4]"))
        fail_msg("unclear error for a model of another shape: %s", msg);
    assert_int_equal(tr->step, 0);
    assert_int_equal(tr->resumed, 0);
    tu_assert_bits("params after a refused resume", small->data, before, small->total);
    da_trainer_free(tr);
    mlp_free(small);
    free(before);

    /* same model, another learning rate */
    p = mlp_create(HIDDEN, 1);
    da_trainer_config c2 = c;
    c2.lr = 2e-2f;
    assert_int_equal(da_trainer_create(&tr, &c2, p), DA_OK);
    assert_int_not_equal(da_trainer_resume(tr, ckpt), DA_OK);
    if (!strstr(da_last_error(), "config.lr")) fail_msg("unclear error for another lr: %s", da_last_error());

    /* a plain weights file is not a checkpoint; a missing file is an I/O error */
    assert_int_equal(da_trainer_resume(tr, weights), DA_ERR_FORMAT);
    if (!strstr(da_last_error(), "not a dalign trainer checkpoint")) fail_msg("%s", da_last_error());
    assert_int_equal(da_trainer_resume(tr, tmp_path("missing.ckpt")), DA_ERR_IO);
    da_trainer_free(tr);
    mlp_free(p);
}

/* The weights alone: the EMA under plain names, loadable by da_params_load. */
/* Trainer state (an RL trainer's rollout buffer): a step function that
 * keeps a running state across steps, stopped after step 7 and resumed into
 * a trainer whose buffer starts as garbage, ends with the uninterrupted
 * run's state and parameters; checkpoints with state the run does not keep,
 * or without state it keeps, or of another size, are refused by name. */
typedef struct state_ctx {
    run_ctx run;
    float buf[3];
} state_ctx;

static da_status state_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    state_ctx *c = user;
    da_status s = mlp_step(tr, t, micro, &c->run, loss);
    /* depends on the state carried in: a lost buffer changes everything after */
    c->buf[0] = c->buf[0] * 0.5f + *loss;
    c->buf[1] += 1.0f;
    c->buf[2] = (float)tr->step;
    return s;
}

static da_trainer *state_trainer(state_ctx *c, da_params **p, long stop_at, const char *ckpt, float fill)
{
    da_trainer_config cfg = base_cfg();
    cfg.stop_at = stop_at;
    cfg.ckpt_path = ckpt;
    *p = mlp_create(HIDDEN, stop_at ? 1 : 999);
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 3; i++) c->buf[i] = fill;
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &cfg, *p), DA_OK);
    assert_int_equal(da_trainer_add_state(tr, "buffer", c->buf, 3), DA_OK);
    return tr;
}

static void test_state_resume(void **state)
{
    (void)state;
    state_ctx full, part, rest;
    da_params *p1, *p2, *p3;
    /* the uninterrupted run, from the init of seed 1 as the stopped one below;
     * the resumed trainer starts from seed 999 and a buffer of 123s */
    da_trainer_config cfg = base_cfg();
    memset(&full, 0, sizeof full);
    p1 = mlp_create(HIDDEN, 1);
    da_trainer *a;
    assert_int_equal(da_trainer_create(&a, &cfg, p1), DA_OK);
    assert_int_equal(da_trainer_add_state(a, "buffer", full.buf, 3), DA_OK);
    assert_int_equal(da_trainer_run(a, state_step, &full), DA_OK);

    const char *ckpt = tmp_path("state.ckpt");
    da_trainer *b = state_trainer(&part, &p2, 7, ckpt, 0.0f);
    assert_int_equal(da_trainer_run(b, state_step, &part), DA_OK);
    assert_int_equal(b->step, 7);
    da_trainer *c = state_trainer(&rest, &p3, 0, ckpt, 123.0f);
    if (da_trainer_resume(c, ckpt) != DA_OK) fail_msg("resume: %s", da_last_error());
    tu_assert_bits("state after resume", rest.buf, part.buf, 3);
    assert_int_equal(da_trainer_run(c, state_step, &rest), DA_OK);
    tu_assert_bits("final state", rest.buf, full.buf, 3);
    tu_assert_bits("final params", p3->data, p1->data, p1->total);

    /* refusals, each naming what differs */
    da_params *p4 = mlp_create(HIDDEN, 1);
    da_trainer *d;
    assert_int_equal(da_trainer_create(&d, &cfg, p4), DA_OK);
    assert_int_not_equal(da_trainer_resume(d, ckpt), DA_OK);
    assert_non_null(strstr(da_last_error(), "state.buffer"));
    float other[4];
    assert_int_equal(da_trainer_add_state(d, "buffer", other, 4), DA_OK);
    assert_int_not_equal(da_trainer_resume(d, ckpt), DA_OK);
    assert_non_null(strstr(da_last_error(), "has 3 values"));
    assert_int_equal(da_trainer_add_state(d, "buffer", other, 3), DA_ERR_INVALID);   /* twice */
    da_trainer_free(d);
    mlp_free(p4);
    const char *plain = tmp_path("plain.ckpt");
    assert_int_equal(da_trainer_save(a, plain), DA_OK);   /* a has state: save then drop it below */
    float mine[3];
    da_params *p5 = mlp_create(HIDDEN, 1);
    da_trainer *e;
    assert_int_equal(da_trainer_create(&e, &cfg, p5), DA_OK);
    assert_int_equal(da_trainer_add_state(e, "other", mine, 3), DA_OK);
    assert_int_not_equal(da_trainer_resume(e, plain), DA_OK);
    assert_non_null(strstr(da_last_error(), "state.other"));
    da_trainer_free(e);
    mlp_free(p5);

    da_trainer_free(a);
    da_trainer_free(b);
    da_trainer_free(c);
    mlp_free(p1);
    mlp_free(p2);
    mlp_free(p3);
}

static void test_save_weights(void **state)
{
    (void)state;
    da_trainer_config c = base_cfg();
    c.stop_at = 3;
    da_params *p = mlp_create(HIDDEN, 1), *q = mlp_create(HIDDEN, 5);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx = {0};
    assert_int_equal(da_trainer_run(tr, mlp_step, &ctx), DA_OK);
    const char *path = tmp_path("w.safetensors");
    assert_int_equal(da_trainer_save_weights(tr, path, 1, NULL, 0), DA_OK);
    assert_int_equal(da_params_load(q, path), DA_OK);
    tu_assert_bits("saved EMA weights", q->data, tr->ema, p->total);
    assert_int_equal(da_trainer_save_weights(tr, path, 0, NULL, 0), DA_OK);
    assert_int_equal(da_params_load(q, path), DA_OK);
    tu_assert_bits("saved weights", q->data, p->data, p->total);

    /* a NaN in the EMA is never published as the final weights, and a
     * checkpoint holding one is refused by name (issue 14) */
    const char *ckpt = tmp_path("nan.ckpt"), *nan_w = tmp_path("nan.safetensors");
    tr->ema[5] = NAN;
    assert_int_equal(da_trainer_save_weights(tr, nan_w, 1, NULL, 0), DA_ERR_RANGE);
    assert_non_null(strstr(da_last_error(), "EMA weights hold a non-finite value at element 5"));
    assert_int_not_equal(access(nan_w, F_OK), 0);
    assert_int_equal(da_trainer_save_weights(tr, nan_w, 0, NULL, 0), DA_OK);   /* the trained ones are fine */
    assert_int_equal(da_trainer_save(tr, ckpt), DA_OK);
    da_trainer *back;
    assert_int_equal(da_trainer_create(&back, &c, q), DA_OK);
    assert_int_equal(da_trainer_resume(back, ckpt), DA_ERR_FORMAT);
    assert_non_null(strstr(da_last_error(), "ema.fc1.weight' holds a non-finite value"));
    assert_false(back->resumed);
    da_trainer_free(back);
    da_trainer_free(tr);
    mlp_free(p);
    mlp_free(q);
}

/* ------------------------------------------------------------------------ */
/* Accumulation, determinism, failures                                      */
/* ------------------------------------------------------------------------ */

/* Run `steps` steps on a fixed dataset with `micro` micro-batches of a batch
 * of 8; returns the trainer (params->grad holds the last step's gradient). */
static da_trainer *run_fixed(int micro, long steps, const float *data, da_params **p_out)
{
    da_trainer_config c = base_cfg();
    c.total_steps = steps;
    c.micro_batches = micro;
    c.clip = 0.0f;  /* keep the raw gradient in params->grad */
    c.ema_decay = 0.0f;
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx = {.fixed_x = data};
    assert_int_equal(da_trainer_run(tr, mlp_step, &ctx), DA_OK);
    *p_out = p;
    return tr;
}

/* 2 micro-batches of 4 (and 4 of 2) against one batch of 8, same examples.
 * The MSE backward scales by 2/n with n a power of two and the harness by
 * 1/K, all exact; what differs is the summation order of the per-example
 * terms of each weight gradient (one GEMM over 8 rows against two over 4,
 * then +=). Each of the 8 terms is <= ~1 in size, so reassociating the sum
 * changes it by a few ulp of the largest partial sum (measured: <= 1.2e-7,
 * 1 ulp at 1.0, on OpenBLAS and the portable GEMM): atol 1e-6 (8 ulp). Dropping the 1/K would be off by 100%, a wrong micro-batch slice by
 * ~10%. After 3 AdamW steps the params (~0.5) differ by the same order:
 * AdamW's m/sqrt(v) normalises the gradient, so relative gradient errors of
 * ~1e-6 move a step of lr = 1e-2 by ~1e-8: atol 1e-6 keeps a wide margin. */
static void test_grad_accumulation(void **state)
{
    (void)state;
    const long steps = 3;
    float *data = tu_alloc_fill((size_t)steps * 8 * IN, 42u, -2.0f, 2.0f);
    da_params *p1, *p2, *p4;
    da_trainer *full = run_fixed(1, 1, data, &p1), *acc = run_fixed(2, 1, data, &p2), *acc4 = run_fixed(4, 1, data, &p4);
    tu_assert_close("grad: 2 micro-batches of 4 vs batch of 8", p2->grad, p1->grad, p1->total, 1e-6, 0.0);
    tu_assert_close("grad: 4 micro-batches of 2 vs batch of 8", p4->grad, p1->grad, p1->total, 1e-6, 0.0);
    /* the loss reported is the mean of the micro-batch means: same reordering */
    assert_true(fabsf(acc->loss - full->loss) <= 1e-6f * fabsf(full->loss));
    double gmax = 0.0;
    for (size_t i = 0; i < p1->total; i++) gmax = fmax(gmax, fabs(p1->grad[i]));
    assert_true(gmax > 1e-2);  /* a test on vanishing gradients would prove nothing */
    da_trainer_free(full); da_trainer_free(acc); da_trainer_free(acc4);
    mlp_free(p1); mlp_free(p2); mlp_free(p4);

    full = run_fixed(1, steps, data, &p1);
    acc = run_fixed(2, steps, data, &p2);
    tu_assert_close("params after 3 steps: accumulated vs full batch", p2->data, p1->data, p1->total, 1e-6, 0.0);
    da_trainer_free(full); da_trainer_free(acc);
    mlp_free(p1); mlp_free(p2);
    free(data);
}

/* One step of the harness equals the optimiser calls written out by hand:
 * grads of the two micro-batches summed and halved, clipped, AdamW at the
 * scheduled lr with step 1, then the EMA from the initial weights. Same
 * float operations in the same order: bit-identical. */
static void test_step_by_hand(void **state)
{
    (void)state;
    da_trainer_config c = base_cfg();
    c.stop_at = 1;
    da_params *p = mlp_create(HIDDEN, 1), *h = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx = {0};
    assert_int_equal(da_trainer_run(tr, mlp_step, &ctx), DA_OK);

    /* by hand: a second trainer only supplies the same RNG streams and tape */
    da_trainer *hand;
    assert_int_equal(da_trainer_create(&hand, &c, h), DA_OK);
    float *init = malloc(h->total * sizeof(float)), *m = calloc(h->total, sizeof(float));
    float *v = calloc(h->total, sizeof(float));
    memcpy(init, h->data, h->total * sizeof(float));
    da_params_zero_grad(h);
    float loss;
    for (int k = 0; k < 2; k++) {
        da_tape_reset(&hand->tape);
        assert_int_equal(mlp_step(hand, &hand->tape, k, &ctx, &loss), DA_OK);
    }
    for (size_t i = 0; i < h->total; i++) h->grad[i] *= 0.5f;
    da_grad_clip(h->grad, h->total, c.clip);
    da_adamw opt = {da_lr_at(c.schedule, c.lr, c.min_lr, 0, c.warmup, c.total_steps), c.beta1, c.beta2, c.eps,
                    c.weight_decay};
    da_adamw_step(h->data, h->grad, m, v, h->total, 1, &opt);
    da_ema_update(init, h->data, h->total, c.ema_decay);
    tu_assert_bits("params", p->data, h->data, h->total);
    tu_assert_bits("adam m", tr->m, m, h->total);
    tu_assert_bits("adam v", tr->v, v, h->total);
    tu_assert_bits("ema", tr->ema, init, h->total);
    da_trainer_free(tr);
    da_trainer_free(hand);
    mlp_free(p);
    mlp_free(h);
    free(init); free(m); free(v);
}

/* The reference run again with 1 and 2 threads: the same bits. */
static void test_threads_same_bits(void **state)
{
    (void)state;
    int saved = da_get_threads();
    for (int threads = 1; threads <= 2; threads++) {
        da_set_threads(threads);
        da_trainer_config c = base_cfg();
        da_params *p = mlp_create(HIDDEN, 1);
        da_trainer *tr;
        assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
        run_ctx ctx = {0};
        assert_int_equal(da_trainer_run(tr, mlp_step, &ctx), DA_OK);
        assert_same_state(threads == 1 ? "1 thread" : "2 threads", tr, &ref_state);
        da_trainer_free(tr);
        mlp_free(p);
    }
    da_set_threads(saved);
}

/* A NaN loss stops the run before the update; the last checkpoint stays. */
static void test_nonfinite_loss(void **state)
{
    (void)state;
    const char *ckpt = tmp_path("nan.ckpt");
    da_trainer_config c = base_cfg();
    c.ckpt_path = ckpt;
    c.ckpt_every = 1;
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx = {.nan_at = 4};
    da_status s = da_trainer_run(tr, mlp_step, &ctx);
    assert_int_equal(s, DA_ERR_RANGE);
    assert_int_equal(da_trainer_exit_code(tr, s), 1);
    assert_int_equal(tr->step, 3);
    da_safetensors *st;
    assert_int_equal(da_st_open(ckpt, &st), DA_OK);
    assert_string_equal(da_st_meta_get(st, "step"), "3");
    da_st_close(st);
    da_trainer_free(tr);
    mlp_free(p);
}

static void test_config_invalid(void **state)
{
    (void)state;
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr = (da_trainer *)p; /* must be reset to NULL on failure */
    da_trainer_config c = base_cfg();
    c.micro_batches = 3;  /* 8 examples do not split into 3 */
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_ERR_INVALID);
    assert_null(tr);
    c = base_cfg();
    c.ema_decay = 1.0f;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_ERR_INVALID);
    c = base_cfg();
    c.total_steps = 0;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_ERR_INVALID);
    c = base_cfg();
    c.name = "has space";
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_ERR_INVALID);
    mlp_free(p);
    /* a frozen model (no gradient buffer) cannot be trained */
    da_params frozen;
    da_params_init(&frozen);
    da_params_add(&frozen, "w", 1, (int[]){3});
    assert_int_equal(da_params_alloc(&frozen, 0), DA_OK);
    c = base_cfg();
    assert_int_equal(da_trainer_create(&tr, &c, &frozen), DA_ERR_INVALID);
    da_params_free(&frozen);
}

/* ------------------------------------------------------------------------ */
/* Metrics log and progress bar                                             */
/* ------------------------------------------------------------------------ */

static const da_json_value *member(const da_json_value *o, const char *key)
{
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->items[i].key, key)) return &o->items[i];
    return NULL;
}

/* ref.jsonl: 20 lines, each a JSON object with step 1..20 in order, loss
 * equal to the mean of the step's micro-batch losses, the scheduled lr,
 * grad_norm, time_s and the trainer's own metric. */
static void test_metrics_log(void **state)
{
    (void)state;
    char *text = slurp(tmp_path("ref.jsonl"));
    assert_non_null(text);
    int lines = 0;
    da_trainer_config c = base_cfg();
    for (char *line = text, *nl; (nl = strchr(line, '\n')); line = nl + 1, lines++) {
        da_json_value root;
        char err[128];
        if (da_json_parse(line, (size_t)(nl - line), &root, err, sizeof err)) fail_msg("line %d: %s", lines + 1, err);
        const char *keys[] = {"step", "loss", "lr", "grad_norm", "time_s", "pred_mean"};
        for (int k = 0; k < 6; k++)
            if (!member(&root, keys[k]) || member(&root, keys[k])->type != DA_JSON_NUMBER)
                fail_msg("line %d lacks number '%s'", lines + 1, keys[k]);
        assert_int_equal(atol(member(&root, "step")->str), lines + 1);
        float loss = strtof(member(&root, "loss")->str, NULL), lr = strtof(member(&root, "lr")->str, NULL);
        float want = (float)(((double)ref_ctx.micro_loss[lines][0] + ref_ctx.micro_loss[lines][1]) / 2);
        assert_true(loss == want);  /* %.9g round-trips a float exactly */
        assert_true(lr == da_lr_at(DA_LR_COSINE, c.lr, c.min_lr, lines, c.warmup, c.total_steps));
        da_json_free(&root);
    }
    assert_int_equal(lines, STEPS);
    free(text);

    /* log_every 5: lines at 5, 10, 15, 20 */
    const char *path = tmp_path("every5.jsonl");
    c.log_every = 5;
    c.metrics_path = path;
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx = {0};
    assert_int_equal(da_trainer_run(tr, mlp_step, &ctx), DA_OK);
    da_trainer_free(tr);
    mlp_free(p);
    text = slurp(path);
    int n = 0;
    for (char *s = text; (s = strstr(s, "{\"step\":")); s++, n++) assert_int_equal(atol(s + 8), 5 * (n + 1));
    assert_int_equal(n, 4);
    free(text);

    /* non-finite values become null; a name that would need escaping is refused */
    da_metrics_log m;
    assert_int_equal(da_metrics_open(&m, path, -1), DA_OK);
    da_metric f[2] = {{"loss", NAN, NULL}, {"x", INFINITY, NULL}};
    assert_int_equal(da_metrics_write(&m, 1, f, 2), DA_OK);
    da_metric bad = {"a\"b", 1.0, NULL};
    assert_int_equal(da_metrics_write(&m, 2, &bad, 1), DA_ERR_INVALID);
    da_metrics_close(&m);
    text = slurp(path);
    assert_string_equal(text, "{\"step\":1,\"loss\":null,\"x\":null}\n");
    free(text);
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++) n += *s == c;
    return n;
}

/* Not a TTY (a file): one plain line every 10% and the final one, no '\r'.
 * As a TTY: redraws limited to ~10/s, ending with a newline. */
static void test_progress(void **state)
{
    (void)state;
    const char *path = tmp_path("progress.txt");
    FILE *f = fopen(path, "w+");
    assert_non_null(f);
    da_progress bar;
    da_progress_init(&bar, fileno(f), "train mlp", 0, 100, 0);
    assert_int_equal(bar.tty, 0);
    for (long s = 1; s <= 100; s++) da_progress_update(&bar, s, 1.0f / (float)s);
    da_progress_finish(&bar);
    fclose(f);
    char *text = slurp(path);
    assert_int_equal(count_char(text, '\n'), 10);  /* steps 10, 20, .., 90, and 100 */
    assert_int_equal(count_char(text, '\r'), 0);
    assert_non_null(strstr(text, "train mlp  10/100  loss "));
    assert_non_null(strstr(text, "100/100"));
    assert_non_null(strstr(text, "it/s"));
    free(text);

    f = fopen(path, "w+");
    da_progress_init(&bar, fileno(f), "x", 0, 100000, 0);
    bar.tty = 1;
    double t0 = da_now_s();
    for (long s = 1; s <= 100000; s++) da_progress_update(&bar, s, 0.5f);
    double dt = da_now_s() - t0;
    da_progress_finish(&bar);
    fclose(f);
    text = slurp(path);
    int draws = count_char(text, '\r');
    /* one draw at the first update, then at most one per 0.1 s, and the final one */
    if (draws < 2 || draws > 2 + (int)(dt / 0.1) + 1) fail_msg("%d redraws in %.3f s", draws, dt);
    assert_int_equal(count_char(text, '\n'), 1);
    assert_int_equal(text[strlen(text) - 1], '\n');
    assert_non_null(strstr(text, "100000/100000  loss 0.5"));
    free(text);
}

/* Whose checkpoint is it (dp_ckpt_describe, the guard of `dalign train`
 * against overwriting another run's), and a resume from a folder or an
 * empty file names the file and what is wrong with it. */
static void test_ckpt_describe(void **state)
{
    (void)state;
    const char *ckpt = tmp_path("whose.ckpt");
    da_trainer_config c = base_cfg();
    c.stop_at = 2;
    c.ckpt_path = ckpt;
    da_params *p = mlp_create(HIDDEN, 1);
    da_trainer *tr;
    assert_int_equal(da_trainer_create(&tr, &c, p), DA_OK);
    run_ctx ctx = {0};
    assert_int_equal(da_trainer_run(tr, mlp_step, &ctx), DA_OK);

    dp_ckpt_info in;
    assert_int_equal(dp_ckpt_describe(ckpt, &c, NULL, &in), DA_OK);
    assert_int_equal(in.kind, DP_CKPT_SAME_RUN);
    assert_string_equal(in.name, c.name);
    assert_int_equal(in.step, 2);
    assert_int_equal(in.total, c.total_steps);
    /* another seed: another run, and the message says which setting */
    da_trainer_config other = c;
    other.seed = c.seed + 1;
    assert_int_equal(dp_ckpt_describe(ckpt, &other, NULL, &in), DA_OK);
    assert_int_equal(in.kind, DP_CKPT_OTHER_RUN);
    if (!strstr(in.why, "seed")) fail_msg("why does not name the seed: %s", in.why);
    /* ... unless the seed is not among the keys compared */
    static const char *const keys[] = {"lr", "total_steps", NULL};
    assert_int_equal(dp_ckpt_describe(ckpt, &other, keys, &in), DA_OK);
    assert_int_equal(in.kind, DP_CKPT_SAME_RUN);
    /* another trainer name */
    other = c;
    other.name = "someone_else";
    assert_int_equal(dp_ckpt_describe(ckpt, &other, NULL, &in), DA_OK);
    assert_int_equal(in.kind, DP_CKPT_OTHER_RUN);
    if (!strstr(in.why, "someone_else")) fail_msg("why: %s", in.why);
    /* nothing there; something that is no checkpoint */
    assert_int_equal(dp_ckpt_describe(tmp_path("nothing.ckpt"), &c, NULL, &in), DA_OK);
    assert_int_equal(in.kind, DP_CKPT_ABSENT);
    const char *junk = tmp_path("junk.ckpt");
    assert_int_equal(da_write_atomic(junk, "junk", 4), DA_OK);
    assert_int_equal(dp_ckpt_describe(junk, &c, NULL, &in), DA_OK);
    assert_int_equal(in.kind, DP_CKPT_OTHER_FILE);

    /* resume errors name the file */
    char want[512];
    const char *empty = tmp_path("empty.ckpt");
    assert_int_equal(da_write_atomic(empty, "", 0), DA_OK);
    assert_int_not_equal(da_trainer_resume(tr, empty), DA_OK);
    snprintf(want, sizeof want, "cannot resume from %s: the file is empty", empty);
    if (!strstr(da_last_error(), want)) fail_msg("%s", da_last_error());
    char dir[400];
    snprintf(dir, sizeof dir, "%s", tmp_path(""));
    assert_int_not_equal(da_trainer_resume(tr, dir), DA_OK);
    snprintf(want, sizeof want, "cannot resume from %s: it is a directory", dir);
    if (!strstr(da_last_error(), want)) fail_msg("%s", da_last_error());
    assert_int_not_equal(da_trainer_resume(tr, junk), DA_OK);
    snprintf(want, sizeof want, "cannot resume from %s: ", junk);
    if (!strstr(da_last_error(), want)) fail_msg("%s", da_last_error());
    assert_int_equal(tr->step, 2);   /* a refused resume changes nothing */
    da_trainer_free(tr);
    mlp_free(p);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_bit_identical),
        cmocka_unit_test(test_signal_resume),
        cmocka_unit_test(test_resume_refused),
        cmocka_unit_test(test_state_resume),
        cmocka_unit_test(test_save_weights),
        cmocka_unit_test(test_grad_accumulation),
        cmocka_unit_test(test_step_by_hand),
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_nonfinite_loss),
        cmocka_unit_test(test_config_invalid),
        cmocka_unit_test(test_metrics_log),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_ckpt_describe),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
