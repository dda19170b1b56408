/* Training the preference model on rater-labelled synthetic pairs
 * (docs/rater.md):
 *   each step: `batch` fresh pairs from da_synth_pair (train split), labelled
 *   by the rater with its Bradley-Terry noise, ties dropped; winners first;
 *   loss = mean -log sigmoid(r(w) - r(l)); AdamW, global-norm clip 1,
 *   warmup then cosine LR.
 * Validation: fixed pairs of another seed (never seen in training), on the
 * train split and on the held-out split, scored against the rater's noisy
 * labels; the rater's own noiseless choice on the same labels is the ceiling
 * the model is compared with. Data come from the seed alone: same seed, same
 * bits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dalign.h"

#define EVAL_CHUNK 32          /* pairs per forward in evaluation */
#define CLIP_NORM 1.0f
#define VAL_SEED_TRAIN 0x5eed0001u
#define VAL_SEED_HELDOUT 0x5eed0002u

da_reward_train_config da_reward_train_defaults(void)
{
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

/* one optimizer step on the pairs in p (winners then losers in one batch of
 * 2n); returns the mean BT loss in *loss */
static da_status train_step(da_tape *t, da_reward_net *m, const pair_set *p, float *imgs, int *ids,
                            uint8_t *keep, float *loss)
{
    int n = p->n;
    memcpy(imgs, p->w, (size_t)n * DA_IMG_FLOATS * sizeof(float));
    memcpy(imgs + (size_t)n * DA_IMG_FLOATS, p->l, (size_t)n * DA_IMG_FLOATS * sizeof(float));
    for (int i = 0; i < 2 * n; i++)
        da_tokenize(p->prompts[i % n], ids + (size_t)i * DA_MAX_TOKENS, keep + (size_t)i * DA_MAX_TOKENS, NULL);
    da_tape_reset(t);
    da_params_zero_grad(&m->params);
    int shape[4] = {2 * n, 3, DA_IMG, DA_IMG};
    da_tensor *r = da_reward_net_forward(t, m, da_leaf(t, imgs, NULL, 4, shape), ids, keep, DA_MAX_TOKENS);
    if (!r) return DA_ERR_INVALID;
    da_tensor *l = da_bt_loss(t, da_narrow(t, r, 0, 0, n), da_narrow(t, r, 0, n, n));
    da_tape_backward(t, l);
    *loss = l->data[0];
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static da_status train_loop(da_reward_net *m, const da_reward_train_config *cfg, pair_set *p, float *imgs,
                            int *ids, uint8_t *keep, float *m1, float *v1, da_reward_train_report *rep)
{
    da_rng rng;
    da_rng_seed(&rng, cfg->seed);
    da_tape t;
    da_tape_init(&t, 32u << 20);
    da_adamw opt = {.lr = cfg->lr, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = cfg->weight_decay};
    int window = cfg->steps / 10 > 0 ? cfg->steps / 10 : 1;
    double first = 0.0, last = 0.0, logged = 0.0, t0 = now_s();
    da_status s = DA_OK;
    for (int step = 0; step < cfg->steps && !s; step++) {
        float loss = 0.0f;
        s = pairs_fill(p, cfg->batch, &rng, DA_SPLIT_TRAIN, &cfg->rater);
        if (!s) s = train_step(&t, m, p, imgs, ids, keep, &loss);
        if (s) break;
        if (!isfinite(loss)) {
            s = da_fail(DA_ERR_RANGE, "reward training: loss is %g at step %d", (double)loss, step);
            break;
        }
        da_grad_clip(m->params.grad, m->params.total, CLIP_NORM);
        opt.lr = da_lr_at(DA_LR_COSINE, cfg->lr, cfg->min_lr, step, cfg->warmup, cfg->steps);
        da_adamw_step(m->params.data, m->params.grad, m1, v1, m->params.total, step + 1, &opt);
        if (step < window) first += loss;
        if (step >= cfg->steps - window) last += loss;
        logged += loss;
        if (cfg->log_every > 0 && (step + 1) % cfg->log_every == 0) {
            fprintf(stderr, "reward net: step %d/%d  loss %.4f  lr %.2e  %.1f s\n", step + 1, cfg->steps,
                    logged / cfg->log_every, (double)opt.lr, now_s() - t0);
            logged = 0.0;
        }
    }
    da_tape_free(&t);
    if (!s && rep) {
        rep->loss_first = (float)(first / window);
        rep->loss_last = (float)(last / window);
    }
    return s;
}

da_status da_reward_net_train(da_reward_net *m, const da_reward_train_config *cfg, da_reward_train_report *rep)
{
    if (!m || !cfg || !m->params.grad) return da_fail(DA_ERR_INVALID, "da_reward_net_train: needs a trainable model");
    if (cfg->steps < 0 || cfg->batch < 1 || cfg->batch > 4096 || cfg->val_pairs < 0 || cfg->warmup < 0 ||
        !(cfg->lr > 0.0f) || cfg->min_lr < 0.0f)
        return da_fail(DA_ERR_INVALID, "da_reward_net_train: bad config (steps %d, batch %d, val_pairs %d, lr %g)",
                       cfg->steps, cfg->batch, cfg->val_pairs, (double)cfg->lr);
    if (m->cfg.image_size != DA_IMG || m->cfg.vocab_size < da_vocab_size() || m->cfg.context < DA_MAX_TOKENS)
        return da_fail(DA_ERR_INVALID, "da_reward_net_train: the model cannot read shapes-world images and prompts");
    size_t P = m->params.total;
    pair_set p;
    da_status s = pairs_alloc(&p, cfg->batch);
    if (s) return s;
    float *imgs = malloc((size_t)2 * cfg->batch * DA_IMG_FLOATS * sizeof(float));
    int *ids = malloc((size_t)2 * cfg->batch * DA_MAX_TOKENS * sizeof(int));
    uint8_t *keep = malloc((size_t)2 * cfg->batch * DA_MAX_TOKENS);
    float *m1 = calloc(P, sizeof(float)), *v1 = calloc(P, sizeof(float));
    if (!imgs || !ids || !keep || !m1 || !v1) s = da_fail(DA_ERR_NOMEM, "reward training: out of memory");
    da_reward_train_report r;
    memset(&r, 0, sizeof r);
    if (!s) s = train_loop(m, cfg, &p, imgs, ids, keep, m1, v1, &r);
    free(imgs); free(ids); free(keep); free(m1); free(v1);
    pairs_free(&p);
    if (!s && cfg->val_pairs > 0) {
        s = validate(m, cfg, DA_SPLIT_TRAIN, cfg->seed ^ VAL_SEED_TRAIN, &r.acc, &r.rater_acc, &r.n_val);
        int n_h;
        if (!s) s = validate(m, cfg, DA_SPLIT_HELDOUT, cfg->seed ^ VAL_SEED_HELDOUT, &r.heldout_acc,
                             &r.heldout_rater_acc, &n_h);
    }
    if (!s && rep) *rep = r;
    return s;
}
