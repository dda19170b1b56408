/* Training the preference model on rater-labelled synthetic pairs
 * (docs/rater.md), on the shared trainer (src/train/trainer.c: AdamW,
 * clipping, LR schedule, JSONL metrics, progress, atomic checkpoints,
 * bit-exact resume, signals):
 *   each step: `batch` fresh pairs from da_synth_pair (train split), labelled
 *   by the rater with its Bradley-Terry noise, ties dropped; winners first;
 *   loss = mean -log sigmoid(r(w) - r(l)); AdamW, global-norm clip 1,
 *   warmup then cosine LR.
 * Pairs and label noise come from the trainer's data RNG, which checkpoints
 * store: a resumed run draws the pairs an uninterrupted one would have.
 * Validation: fixed pairs of another seed (never seen in training), on the
 * train split and on the held-out split, scored against the rater's noisy
 * labels; the rater's own noiseless choice on the same labels is the ceiling
 * the model is compared with. Data come from the seed alone: same seed, same
 * bits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/train.h"

#define EVAL_CHUNK 32          /* pairs per forward in evaluation */
#define CLIP_NORM 1.0f
#define MAX_BATCH 4096
#define TRAINER_NAME "reward_net"   /* progress label, checkpoint metadata */
#define VAL_SEED_TRAIN 0x5eed0001u
#define VAL_SEED_HELDOUT 0x5eed0002u

da_reward_train_config da_reward_train_defaults(void)
{
    /* run options zero: no checkpoints, no log, no signal handlers */
    da_reward_train_config c = {.steps = 8000, .batch = 32, .lr = 1e-3f, .min_lr = 1e-5f, .warmup = 100,
                                .weight_decay = 0.01f, .val_pairs = 1000, .seed = 0, .log_every = 0,
                                .rater = da_rater_config_default()};
    return c;
}

/* n labelled pairs, winner (by the rater's noisy label) first */
typedef struct pair_set {
    int n;
    float *w, *l;                          /* (n, 3, 32, 32) each */
    char (*prompt)[DA_CAPTION_MAX];
    const char **prompts;                  /* pointers into prompt */
    int rater_right;                       /* pairs where the noiseless rater agrees */
} pair_set;

static void pairs_free(pair_set *p)
{
    free(p->w);
    free(p->l);
    free(p->prompt);
    free(p->prompts);
    memset(p, 0, sizeof *p);
}

static da_status pairs_alloc(pair_set *p, int n)
{
    memset(p, 0, sizeof *p);
    p->w = malloc((size_t)n * DA_IMG_FLOATS * sizeof(float));
    p->l = malloc((size_t)n * DA_IMG_FLOATS * sizeof(float));
    p->prompt = malloc((size_t)n * sizeof *p->prompt);
    p->prompts = malloc((size_t)n * sizeof *p->prompts);
    if (!p->w || !p->l || !p->prompt || !p->prompts) {
        pairs_free(p);
        return da_fail(DA_ERR_NOMEM, "reward training: out of memory for %d pairs", n);
    }
    for (int i = 0; i < n; i++) p->prompts[i] = p->prompt[i];
    return DA_OK;
}

/* fill p (allocated for n) with n non-tie labelled pairs drawn from rng */
static da_status pairs_fill(pair_set *p, int n, da_rng *rng, da_split split, const da_rater_config *rc)
{
    float a[DA_IMG_FLOATS], b[DA_IMG_FLOATS];
    p->n = 0;
    p->rater_right = 0;
    while (p->n < n) {
        char *prompt = p->prompt[p->n];
        da_rater_terms ta, tb;
        da_status s = da_synth_pair(rng, split, a, b, prompt, DA_CAPTION_MAX);
        if (!s) s = da_rater_utility(rc, a, prompt, &ta);
        if (!s) s = da_rater_utility(rc, b, prompt, &tb);
        if (s) return s;
        int label = da_rater_label(rc, ta.utility, tb.utility, rng);
        if (label == 0) continue;  /* ties are dropped */
        int noiseless = ta.utility > tb.utility ? 1 : -1;
        p->rater_right += noiseless == label;
        memcpy(p->w + (size_t)p->n * DA_IMG_FLOATS, label > 0 ? a : b, sizeof a);
        memcpy(p->l + (size_t)p->n * DA_IMG_FLOATS, label > 0 ? b : a, sizeof a);
        p->n++;
    }
    return DA_OK;
}

/* scores of n images with their prompts (n <= 2 * EVAL_CHUNK), gradients off */
static da_status score_images(da_tape *t, const da_reward_net *m, const float *imgs, const char *const *prompts,
                              int n, float *out)
{
    int ids[2 * EVAL_CHUNK * DA_MAX_TOKENS];
    uint8_t keep[2 * EVAL_CHUNK * DA_MAX_TOKENS];
    for (int i = 0; i < n; i++)
        da_tokenize(prompts[i], ids + (size_t)i * DA_MAX_TOKENS, keep + (size_t)i * DA_MAX_TOKENS, NULL);
    int shape[4] = {n, 3, DA_IMG, DA_IMG};
    da_tensor *r = da_reward_net_forward(t, m, da_leaf(t, (float *)imgs, NULL, 4, shape), ids, keep, DA_MAX_TOKENS);
    if (!r) return DA_ERR_INVALID;
    memcpy(out, r->data, (size_t)n * sizeof(float));
    return DA_OK;
}

da_status da_reward_net_pair_accuracy(const da_reward_net *m, const float *img_w, const float *img_l,
                                      const char *const *prompts, int n, float *acc)
{
    if (!m || !img_w || !img_l || !prompts || !acc || n < 1)
        return da_fail(DA_ERR_INVALID, "da_reward_net_pair_accuracy: bad argument");
    da_tape t;
    da_tape_init(&t, 8u << 20);
    da_tape_set_grad(&t, 0);
    da_status s = DA_OK;
    int right = 0;
    for (int i0 = 0; i0 < n && !s; i0 += EVAL_CHUNK) {
        int k = n - i0 < EVAL_CHUNK ? n - i0 : EVAL_CHUNK;
        float rw[EVAL_CHUNK], rl[EVAL_CHUNK];
        da_tape_reset(&t);
        s = score_images(&t, m, img_w + (size_t)i0 * DA_IMG_FLOATS, prompts + i0, k, rw);
        if (!s) {
            da_tape_reset(&t);
            s = score_images(&t, m, img_l + (size_t)i0 * DA_IMG_FLOATS, prompts + i0, k, rl);
        }
        for (int i = 0; i < k && !s; i++) right += rw[i] > rl[i];
    }
    da_tape_free(&t);
    if (!s) *acc = (float)right / (float)n;
    return s;
}

/* ------------------------------------------------------------------------ */
/* The step                                                                 */
/* ------------------------------------------------------------------------ */

/* Scratch of one step, allocated once; nothing in it outlives a step except
 * the report's loss sums, which only feed the report. */
typedef struct reward_job {
    da_reward_net *m;
    const da_rater_config *rater;
    pair_set p;                 /* this step's B pairs */
    float *imgs;                /* (2B, 3, 32, 32): winners, then losers */
    int *ids;                   /* (2B, DA_MAX_TOKENS) */
    uint8_t *keep;
    long window;                /* steps in each of the report's loss means */
    double first, last;         /* loss sums over the first / last window steps run here */
    long n_first, n_last;       /* how many of those steps this session ran */
} reward_job;

static void job_free(reward_job *j)
{
    pairs_free(&j->p);
    free(j->imgs);
    free(j->ids);
    free(j->keep);
}

static da_status job_init(reward_job *j, da_reward_net *m, const da_reward_train_config *cfg)
{
    memset(j, 0, sizeof *j);
    j->m = m;
    j->rater = &cfg->rater;
    j->window = cfg->steps / 10 > 0 ? cfg->steps / 10 : 1;
    da_status s = pairs_alloc(&j->p, cfg->batch);
    if (s) return s;
    size_t rows = (size_t)2 * cfg->batch;
    j->imgs = malloc(rows * DA_IMG_FLOATS * sizeof(float));
    j->ids = malloc(rows * DA_MAX_TOKENS * sizeof(int));
    j->keep = malloc(rows * DA_MAX_TOKENS);
    if (!j->imgs || !j->ids || !j->keep) {
        job_free(j);
        return da_fail(DA_ERR_NOMEM, "reward training: out of memory");
    }
    return DA_OK;
}

/* forward and backward of the pairs in j->p as one batch of 2n (winners,
 * then losers): r (2n) -> loss = mean -log sigmoid(r[:n] - r[n:]) */
static da_status forward_backward(da_tape *t, reward_job *j, float *loss, int *right)
{
    const pair_set *p = &j->p;
    int n = p->n;
    memcpy(j->imgs, p->w, (size_t)n * DA_IMG_FLOATS * sizeof(float));
    memcpy(j->imgs + (size_t)n * DA_IMG_FLOATS, p->l, (size_t)n * DA_IMG_FLOATS * sizeof(float));
    for (int i = 0; i < 2 * n; i++)
        da_tokenize(p->prompts[i % n], j->ids + (size_t)i * DA_MAX_TOKENS, j->keep + (size_t)i * DA_MAX_TOKENS,
                    NULL);
    int shape[4] = {2 * n, 3, DA_IMG, DA_IMG};
    da_tensor *r = da_reward_net_forward(t, j->m, da_leaf(t, j->imgs, NULL, 4, shape), j->ids, j->keep,
                                         DA_MAX_TOKENS);
    if (!r) return DA_ERR_INVALID;   /* the forward set the message */
    da_tensor *l = da_bt_loss(t, da_narrow(t, r, 0, 0, n), da_narrow(t, r, 0, n, n));
    da_tape_backward(t, l);
    *loss = l->data[0];
    *right = 0;
    for (int i = 0; i < n; i++) *right += r->data[i] > r->data[n + i];
    return DA_OK;
}

/* da_step_fn: draw the step's pairs from the trainer's data RNG, then one
 * forward and backward (the harness zeroed the gradients and reset t) */
static da_status reward_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    (void)micro;   /* one micro-batch: the batch is one forward */
    reward_job *j = user;
    int right = 0;
    da_status s = pairs_fill(&j->p, tr->micro_size, &tr->data_rng, DA_SPLIT_TRAIN, j->rater);
    if (!s) s = forward_backward(t, j, loss, &right);
    if (s) return s;
    long step = tr->step;   /* 0-based index of this step */
    if (step < j->window) {
        j->first += *loss;
        j->n_first++;
    }
    if (step >= tr->cfg.total_steps - j->window) {
        j->last += *loss;
        j->n_last++;
    }
    da_trainer_metric(tr, "acc", (double)right / j->p.n);   /* batch pair accuracy */
    return DA_OK;
}

static da_status validate(const da_reward_net *m, const da_reward_train_config *cfg, da_split split,
                          uint64_t seed, float *acc, float *rater_acc, int *n_val)
{
    pair_set v;
    da_rng rng;
    da_rng_seed(&rng, seed);
    da_status s = pairs_alloc(&v, cfg->val_pairs);
    if (s) return s;
    s = pairs_fill(&v, cfg->val_pairs, &rng, split, &cfg->rater);
    if (!s) s = da_reward_net_pair_accuracy(m, v.w, v.l, v.prompts, v.n, acc);
    if (!s) {
        *rater_acc = (float)v.rater_right / (float)v.n;
        *n_val = v.n;
    }
    pairs_free(&v);
    return s;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

/* The shared trainer's config: the fixed optimizer settings of this model
 * and the caller's run options. */
static da_trainer_config trainer_config(const da_reward_train_config *c)
{
    da_trainer_config t = da_trainer_defaults();
    t.name = TRAINER_NAME;
    t.total_steps = c->steps;
    t.batch = c->batch;
    t.micro_batches = 1;
    t.lr = c->lr;
    t.min_lr = c->min_lr;
    t.warmup = c->warmup;
    t.schedule = DA_LR_COSINE;
    t.beta1 = 0.9f;
    t.beta2 = 0.999f;
    t.eps = 1e-8f;
    t.weight_decay = c->weight_decay;
    t.clip = CLIP_NORM;
    t.ema_decay = 0.0f;
    t.seed = c->seed;   /* the data RNG: pairs and label noise */
    t.stop_at = c->stop_at;
    t.ckpt_path = c->ckpt_path;
    t.ckpt_every = c->ckpt_every;
    t.metrics_path = c->metrics_path;
    t.log_every = c->log_every > 0 ? c->log_every : 1;
    t.progress = c->log_every > 0;
    t.progress_every = c->log_every;
    t.handle_signals = c->handle_signals;
    return t;
}

/* a mean over the window, NaN when some of its steps ran in another session */
static float window_mean(double sum, long n, long window)
{
    return n == window ? (float)(sum / window) : NAN;
}

static da_status train(da_reward_net *m, const da_reward_train_config *cfg, da_reward_train_report *r)
{
    reward_job j;
    da_status s = job_init(&j, m, cfg);
    if (s) return s;
    da_trainer_config tc = trainer_config(cfg);
    da_trainer *tr = NULL;
    s = da_trainer_create(&tr, &tc, &m->params);
    if (!s && cfg->resume) {
        s = da_trainer_resume(tr, cfg->resume);
        if (!s && tc.progress)
            da_log(DA_LOG_INFO, "%s: resumed from %s at step %ld of %d", tc.name, cfg->resume, tr->step, cfg->steps);
    }
    if (!s) s = da_trainer_run(tr, reward_step, &j);
    if (tr) {
        r->steps_done = tr->step;
        r->stop_signal = tr->stop_signal;
    }
    r->loss_first = window_mean(j.first, j.n_first, j.window);
    r->loss_last = window_mean(j.last, j.n_last, j.window);
    da_trainer_free(tr);
    job_free(&j);
    return s;
}

da_status da_reward_net_train(da_reward_net *m, const da_reward_train_config *cfg, da_reward_train_report *rep)
{
    if (!m || !cfg || !m->params.grad) return da_fail(DA_ERR_INVALID, "da_reward_net_train: needs a trainable model");
    if (cfg->steps < 0 || cfg->batch < 1 || cfg->batch > MAX_BATCH || cfg->val_pairs < 0 || cfg->warmup < 0 ||
        !(cfg->lr > 0.0f) || cfg->min_lr < 0.0f)
        return da_fail(DA_ERR_INVALID, "da_reward_net_train: bad config (steps %d, batch %d, val_pairs %d, lr %g)",
                       cfg->steps, cfg->batch, cfg->val_pairs, (double)cfg->lr);
    if (m->cfg.image_size != DA_IMG || m->cfg.vocab_size < da_vocab_size() || m->cfg.context < DA_MAX_TOKENS)
        return da_fail(DA_ERR_INVALID, "da_reward_net_train: the model cannot read shapes-world images and prompts");
    da_reward_train_report r;
    memset(&r, 0, sizeof r);
    /* 0 steps: validation only (the harness needs at least one step) */
    da_status s = cfg->steps > 0 ? train(m, cfg, &r) : DA_OK;
    int finished = !r.stop_signal && r.steps_done == cfg->steps;
    if (!s && finished && cfg->val_pairs > 0) {
        s = validate(m, cfg, DA_SPLIT_TRAIN, cfg->seed ^ VAL_SEED_TRAIN, &r.acc, &r.rater_acc, &r.n_val);
        int n_h;
        if (!s) s = validate(m, cfg, DA_SPLIT_HELDOUT, cfg->seed ^ VAL_SEED_HELDOUT, &r.heldout_acc,
                             &r.heldout_rater_acc, &n_h);
    }
    if (!s && rep) *rep = r;
    return s;
}
