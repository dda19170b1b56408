/* RL on the UNet's weights (docs/rl-weights.md; design §6, §11): DDPO,
 * GRPO on DDIM eta > 0, and RAFT (best of K), on the shared harness. One
 * iteration:
 *
 *   rollouts   Q train-split prompts (queries.h: never an evaluation
 *              prompt's meaning) x G trajectories each, sampled by the
 *              POLICY with DDIM (CFG as at inference); every x_t kept
 *   reward     r_i = reward(image_i, prompt_i)
 *   advantage  DDPO: per-prompt tracker (rl_losses.c); GRPO: relative to
 *              the group (grpo_advantages); both clamped to +-adv_clip.
 *              RAFT: the best of the G images of each prompt is kept
 *   log-probs  of each chosen step under the rollout weights ("old"),
 *              recomputed by the training forward itself, so the first
 *              update's ratio is exactly 1; GRPO: the base's step means
 *   updates    E epochs x Mb minibatches of whole groups, one optimizer
 *              step each: DDPO/GRPO the clipped surrogate (+ KL) summed
 *              over the chosen steps; RAFT eps-MSE on the kept images
 *
 * Harness step s is update (s mod E*Mb) of iteration s / (E*Mb); the
 * rollout buffer and the tracker are trainer state, so a run stopped
 * between two updates resumes bit for bit. The rollouts use a sampling
 * loop of their own over da_ddim_step rather than da_pipeline_generate:
 * GRPO's shared initial noise needs x_T shared by a group while the step
 * noise differs, which one seed per image cannot say. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dalign/train.h"
#include "train/grpo.h"
#include "train/pretrain.h"
#include "train/queries.h"
#include "train/rl_weights.h"

#define M DA_MAX_TOKENS
#define N_FINGERPRINT 24
#define TRACK_SLOTS 256

/* ---- options ---------------------------------------------------------------- */

static const char *const METHOD_NAMES[] = {"ddpo", "grpo", "raft"};

da_status da_rlw_method_parse(const char *name, da_rlw_method *out)
{
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, METHOD_NAMES[i])) {
            *out = (da_rlw_method)i;
            return DA_OK;
        }
    return da_fail(DA_ERR_INVALID, "unknown RL method '%s' (ddpo, grpo or raft)", name ? name : "(null)");
}

const char *da_rlw_method_name(da_rlw_method m) { return (unsigned)m < 3 ? METHOD_NAMES[m] : "?"; }

da_rlw_opts da_rlw_defaults(da_rlw_method m)
{
    da_rlw_opts o = {
        .method = m, .init = "unet", .reward = "faithful", .prompts = 8, .group = 4,
        .sample = da_sample_opts_default(), .timestep_frac = 0.5f, .epochs = 1, .minibatches = 2,
        .clip_eps = 1e-4f, .adv_clip = 5.0f, .adv_eps = 1e-6f, .kl_coef = 0.0f, .tracker_size = 32, .tracker_min = 16,
    };
    o.sample.eta = 1.0f;   /* DDPO's stochastic sampler: every step has a density */
    if (m == DA_RLW_GRPO) {
        o.prompts = 4, o.group = 8, o.kl_coef = 0.04f, o.adv_eps = 1e-4f;
    } else if (m == DA_RLW_RAFT) {
        o.sample.eta = 0.0f;   /* RAFT needs no densities: the inference sampler */
        o.epochs = 2;
    }
    return o;
}

/* images (DDPO/GRPO) or kept images (RAFT) per update */
static int update_rows(const da_rlw_opts *o)
{
    int mb = o->minibatches > 0 ? o->minibatches : 1;
    return (o->method == DA_RLW_RAFT ? o->prompts : o->prompts * o->group) / mb;
}

void da_rlw_trainer_defaults(da_trainer_config *tc, const da_rlw_opts *o)
{
    *tc = da_trainer_defaults();
    tc->name = da_rlw_method_name(o->method);
    tc->total_steps = 100L * o->epochs * o->minibatches;   /* 100 iterations */
    tc->batch = update_rows(o);
    tc->micro_batches = 1;
    tc->lr = tc->min_lr = 1e-5f;
    tc->warmup = 0;
    tc->weight_decay = 0.0f;
    tc->clip = 1.0f;
    tc->ema_decay = 0.0f;   /* the policy is the last iterate */
    tc->log_every = 1;
}

static da_status check_sizes(const da_trainer_config *tc, const da_rlw_opts *o)
{
    if (o->prompts < 1 || o->group < 2)
        return da_fail(DA_ERR_INVALID, "prompts %d must be >= 1 and group %d >= 2", o->prompts, o->group);
    if (o->prompts * o->group > 4096) return da_fail(DA_ERR_INVALID, "prompts x group %d > 4096", o->prompts * o->group);
    if (o->epochs < 1 || o->minibatches < 1 || o->prompts % o->minibatches)
        return da_fail(DA_ERR_INVALID, "minibatches %d must divide the %d prompts (a minibatch holds whole groups), "
                       "epochs %d >= 1", o->minibatches, o->prompts, o->epochs);
    if (tc->batch != update_rows(o) || tc->micro_batches != 1)
        return da_fail(DA_ERR_INVALID, "trainer batch %d must be the %d images of one update, one micro-batch", tc->batch,
                       update_rows(o));
    if (tc->total_steps % ((long)o->epochs * o->minibatches))
        return da_fail(DA_ERR_INVALID, "steps %ld must be a whole number of iterations of %d updates", tc->total_steps,
                       o->epochs * o->minibatches);
    if (o->prompt_pool < 0) return da_fail(DA_ERR_INVALID, "prompt pool %d must be >= 0", o->prompt_pool);
    return DA_OK;
}

static da_status check_policy_gradient(const da_rlw_opts *o)
{
    if (o->method == DA_RLW_RAFT) return DA_OK;
    if (!(o->sample.eta > 0.0f))
        return da_fail(DA_ERR_INVALID, "eta %g: %s needs DDIM eta > 0 (a step without noise has no log-probability)",
                       (double)o->sample.eta, da_rlw_method_name(o->method));
    if (o->sample.steps < 2) return da_fail(DA_ERR_INVALID, "steps %d: the last step has no noise, 2 needed", o->sample.steps);
    if (!(o->timestep_frac > 0.0f && o->timestep_frac <= 1.0f))
        return da_fail(DA_ERR_INVALID, "timestep fraction %g not in (0, 1]", (double)o->timestep_frac);
    if (!(o->clip_eps > 0.0f && o->clip_eps < 1.0f)) return da_fail(DA_ERR_INVALID, "clip %g not in (0, 1)", (double)o->clip_eps);
    if (!(o->adv_clip > 0.0f)) return da_fail(DA_ERR_INVALID, "advantage clamp %g must be > 0", (double)o->adv_clip);
    if (!(o->adv_eps > 0.0f)) return da_fail(DA_ERR_INVALID, "advantage eps must be > 0");
    if (!(o->kl_coef >= 0.0f) || !isfinite(o->kl_coef)) return da_fail(DA_ERR_INVALID, "kl coefficient %g must be >= 0", (double)o->kl_coef);
    if (o->kl_coef > 0.0f && o->method != DA_RLW_GRPO) return da_fail(DA_ERR_INVALID, "--kl is a GRPO option");
    if (o->shared_noise && o->method != DA_RLW_GRPO) return da_fail(DA_ERR_INVALID, "--shared-noise is a GRPO option");
    if (o->method == DA_RLW_DDPO && (o->tracker_size < 1 || o->tracker_min < 1 || o->prompts > TRACK_SLOTS))
        return da_fail(DA_ERR_INVALID, "tracker size %d and minimum %d must be >= 1, prompts <= %d", o->tracker_size,
                       o->tracker_min, TRACK_SLOTS);
    return DA_OK;
}

da_status da_rlw_check(const da_trainer_config *tc, const da_rlw_opts *o)
{
    if ((unsigned)o->method > DA_RLW_RAFT) return da_fail(DA_ERR_INVALID, "unknown RL method %d", (int)o->method);
    if (!o->name || !*o->name) return da_fail(DA_ERR_INVALID, "--name is required");
    if (!o->init || !o->reward) return da_fail(DA_ERR_INVALID, "no init UNet or reward named");
    if (o->sample.sampler != DA_SAMPLER_DDIM) return da_fail(DA_ERR_INVALID, "the rollouts sample with DDIM only");
    if (o->sample.steps < 1 || !isfinite(o->sample.cfg) || !(o->sample.eta >= 0.0f))
        return da_fail(DA_ERR_INVALID, "sampler steps %d, cfg %g, eta %g", o->sample.steps, (double)o->sample.cfg,
                       (double)o->sample.eta);
    da_status s = check_sizes(tc, o);
    return s == DA_OK ? check_policy_gradient(o) : s;
}

/* ---- the job ---------------------------------------------------------------- */

/* the rollout buffer (trainer state, all floats: ids < 2^24 are exact) */
typedef struct rlw_buffer {
    float *ids;          /* (rows, M) the prompts' tokens */
    float *traj;         /* DDPO/GRPO (n, S + 1, L) x_T .. x_0; RAFT (Q, L) the kept x_0 */
    float *sel;          /* (n, n_sel) the trained steps of each trajectory */
    float *lp_old;       /* (n, n_sel) */
    float *mu_ref;       /* (n, n_sel, L) GRPO with a KL: the base's step means */
    float *adv;          /* (n) */
    float *tracker;      /* DDPO: rlw_tracker data */
    float *fingerprint;  /* (N_FINGERPRINT) */
} rlw_buffer;

typedef struct rlw_job {
    da_rlw_opts o;
    da_pipeline *pipe;        /* text encoder, VAE and the frozen base UNet */
    da_unet *policy;
    da_reward *reward;
    dq_excluded excluded;
    da_ddim ddim;
    int S, n_sel, n_train, n, L, T, D, per_iter, guided, pool_n;
    int *train_steps;         /* (S) steps with noise (std > 0) */
    char *text, *pool;        /* (Q, CAP) this iteration's prompts; (pool_n, CAP) */
    rlw_buffer b;
    rlw_tracker tracker;
    da_tape nograd;
    float *ctx_u;             /* (T, D) the empty prompt's encoding */
    int ids_u[M];
    uint8_t keep_u[M];
    /* scratch for up to 2n UNet rows */
    float *xin, *ts, *ctx, *xa, *xb, *lpo, *advc, *mur, *lp, *mu, *zeros, *noise, *roll, *z, *images, *r, *eps;
    int *ids, *trow, *perm;
    uint8_t *keep;
    da_rng *rngs;
    const char **prompts;
    rlw_rows rows;
} rlw_job;

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void fingerprint(const rlw_job *j, float *f)
{
    const da_rlw_opts *o = &j->o;
    uint32_t h[2] = {fnv1a(o->init), fnv1a(o->reward)};
    float v[N_FINGERPRINT] = {
        (float)o->method, (float)o->prompts, (float)o->group, (float)o->prompt_pool, (float)o->shared_noise,
        (float)o->sample.steps, o->sample.cfg, o->sample.eta, o->timestep_frac, (float)o->epochs,
        (float)o->minibatches, o->clip_eps, o->adv_clip, o->adv_eps, o->kl_coef, (float)o->tracker_size,
        (float)o->tracker_min, (float)(h[0] & 0xffff), (float)(h[1] & 0xffff), (float)((h[0] ^ h[1]) >> 16),
        (float)j->n_sel, (float)j->L, 0.0f, 0.0f,
    };
    memcpy(f, v, sizeof v);
}

static void job_free(rlw_job *j)
{
    da_pipeline_free(j->pipe);
    da_unet_free(j->policy);
    da_reward_free(j->reward);
    dq_excluded_free(&j->excluded);
    if (j->ddim.timesteps) da_ddim_free(&j->ddim);
    da_tape_free(&j->nograd);
    void *f[] = {j->b.ids, j->b.traj, j->b.sel, j->b.lp_old, j->b.mu_ref, j->b.adv, j->b.tracker, j->b.fingerprint,
                 j->train_steps, j->text, j->pool, j->ctx_u, j->xin, j->ts, j->ctx, j->xa, j->xb, j->lpo, j->advc,
                 j->mur, j->lp, j->mu, j->zeros, j->noise, j->roll, j->z, j->images, j->r, j->eps, j->ids, j->trow,
                 j->perm, j->keep, j->rngs, j->prompts};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
}

static da_status job_alloc(rlw_job *j)
{
    size_t n = (size_t)j->n, L = (size_t)j->L, S = (size_t)j->S, ns = (size_t)(j->n_sel ? j->n_sel : 1);
    size_t Q = (size_t)j->o.prompts, TD = (size_t)j->T * j->D;
    rlw_buffer *b = &j->b;
    int pg = j->o.method != DA_RLW_RAFT;
    b->ids = malloc(n * M * sizeof(float));   /* RAFT keeps its Q winners in the first rows */
    b->traj = malloc((pg ? n * (S + 1) : Q) * L * sizeof(float));
    b->sel = malloc(n * ns * sizeof(float));
    b->lp_old = malloc(n * ns * sizeof(float));
    b->mu_ref = j->o.kl_coef > 0.0f ? malloc(n * ns * L * sizeof(float)) : NULL;
    b->adv = malloc(n * sizeof(float));
    b->tracker = calloc(rlw_tracker_floats(TRACK_SLOTS, j->o.tracker_size > 0 ? j->o.tracker_size : 1), sizeof(float));
    b->fingerprint = malloc(N_FINGERPRINT * sizeof(float));
    j->text = calloc(Q, DA_CAPTION_MAX);
    j->ctx_u = malloc(TD * sizeof(float));
    j->xin = malloc(2 * n * L * sizeof(float));
    j->ts = malloc(2 * n * sizeof(float));
    j->ctx = malloc(2 * n * TD * sizeof(float));
    j->keep = malloc(2 * n * M);
    j->ids = malloc(n * M * sizeof(int));
    j->xa = malloc(n * L * sizeof(float));
    j->xb = malloc(n * L * sizeof(float));
    j->eps = malloc(n * L * sizeof(float));
    j->lpo = malloc(n * sizeof(float));
    j->advc = malloc(n * sizeof(float));
    j->lp = malloc(n * sizeof(float));
    j->trow = malloc(n * sizeof(int));
    j->mur = malloc(n * L * sizeof(float));
    j->mu = malloc(L * sizeof(float));
    j->zeros = calloc(L, sizeof(float));
    j->noise = malloc(L * sizeof(float));
    j->roll = malloc(n * (S + 1) * L * sizeof(float));
    j->z = malloc(n * L * sizeof(float));
    j->images = malloc(n * DA_IMG_FLOATS * sizeof(float));
    j->r = malloc(n * sizeof(float));
    j->perm = malloc(S * sizeof(int));
    j->rngs = malloc(n * sizeof(da_rng));
    j->prompts = malloc(n * sizeof(char *));
    if (!b->ids || !b->traj || !b->sel || !b->lp_old || (j->o.kl_coef > 0.0f && !b->mu_ref) || !b->adv || !b->tracker ||
        !b->fingerprint || !j->text || !j->ctx_u || !j->xin || !j->ts || !j->ctx || !j->keep || !j->ids || !j->xa ||
        !j->xb || !j->eps || !j->lpo || !j->advc || !j->lp || !j->trow || !j->mur || !j->mu || !j->zeros ||
        !j->noise || !j->roll || !j->z || !j->images || !j->r || !j->perm || !j->rngs || !j->prompts)
        return da_fail(DA_ERR_NOMEM, "%s: out of memory for %d rollouts", da_rlw_method_name(j->o.method), j->n);
    j->tracker = (rlw_tracker){.slots = TRACK_SLOTS, .cap = j->o.tracker_size, .min_count = j->o.tracker_min,
                               .data = b->tracker};
    return DA_OK;
}

/* the sampler (the pipeline's DDIM, configured as da_pipeline_generate
 * does) and its steps that have noise: only those have a density */
static da_status init_sampler(rlw_job *j)
{
    const da_noise_config *nc = &j->pipe->noise;
    da_ddim_config c = da_ddim_config_default();
    c.prediction = nc->prediction;
    c.spacing = nc->spacing;
    c.steps_offset = nc->steps_offset;
    c.clip_sample = nc->clip_sample;
    c.clip_sample_range = nc->clip_sample_range;
    c.set_alpha_to_one = nc->set_alpha_to_one;
    c.eta = j->o.sample.eta;
    da_status s = da_ddim_init(&j->ddim, &j->pipe->sched, &c, j->o.sample.steps);
    if (s != DA_OK) return s;
    if (j->o.kl_coef > 0.0f && c.clip_sample)
        return da_fail(DA_ERR_INVALID, "--kl needs a scheduler without clip_sample (the step mean must be affine in "
                       "the model output)");
    j->S = j->o.sample.steps;
    j->train_steps = malloc((size_t)j->S * sizeof(int));
    if (!j->train_steps) return da_fail(DA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < j->S; i++) {
        float c_e, sigma;
        s = rlw_ddim_coef(&j->ddim, j->ddim.timesteps[i], &c_e, &sigma);
        if (s != DA_OK) return s;
        if (sigma > 0.0f) j->train_steps[j->n_train++] = i;
    }
    if (j->o.method == DA_RLW_RAFT) return DA_OK;
    if (j->n_train == 0) return da_fail(DA_ERR_INVALID, "no sampler step has noise: nothing to train on");
    /* DDPO: int(num_steps * timestep_fraction), at least one */
    j->n_sel = (int)((float)j->n_train * j->o.timestep_frac);
    if (j->n_sel < 1) j->n_sel = 1;
    return DA_OK;
}

static da_status draw_pool(rlw_job *j, uint64_t seed)
{
    j->pool_n = j->o.prompt_pool;
    if (!j->pool_n) return DA_OK;
    j->pool = calloc((size_t)j->pool_n, DA_CAPTION_MAX);
    if (!j->pool) return da_fail(DA_ERR_NOMEM, "out of memory");
    da_rng rng;
    da_rng_seed(&rng, seed ^ 0x9001d5eedull);
    da_status s = DA_OK;
    for (int i = 0; s == DA_OK && i < j->pool_n; i++) {
        da_scene spec;
        s = dq_draw(&rng, DA_SPLIT_TRAIN, &j->excluded, j->pool + (size_t)i * DA_CAPTION_MAX, &spec);
    }
    return s;
}

static da_status job_init(rlw_job *j, const da_rlw_opts *o, const char *dir, uint64_t seed)
{
    j->o = *o;
    j->n = o->prompts * o->group;
    j->per_iter = o->epochs * o->minibatches;
    j->guided = o->sample.cfg != 1.0f;
    da_tape_init(&j->nograd, (size_t)1 << 22);
    da_tape_set_grad(&j->nograd, 0);
    da_status s = da_weights_load_pipeline(&j->pipe, dir, o->init);
    if (s == DA_OK) s = da_reward_create(&j->reward, o->reward, dir);
    if (s == DA_OK) s = dq_excluded_init(&j->excluded);
    if (s == DA_OK) s = init_sampler(j);
    if (s == DA_OK) s = draw_pool(j, seed);
    if (s != DA_OK) return s;
    /* the policy starts as the base's exact copy; the base stays frozen */
    if (!(j->policy = da_unet_create(&j->pipe->unet->cfg, 1))) return DA_ERR_INVALID;
    memcpy(j->policy->params.data, j->pipe->unet->params.data, j->policy->params.total * sizeof(float));
    j->L = j->pipe->vae->cfg.latent_channels * j->pipe->latent_h * j->pipe->latent_w;
    j->T = M;
    j->D = j->pipe->text->cfg.d_model;
    s = job_alloc(j);
    if (s == DA_OK) s = da_prompt_tokens(DA_UNCOND_PROMPT, j->ids_u, j->keep_u);
    if (s != DA_OK) return s;
    da_tape_reset(&j->nograd);
    da_tensor *u = da_text_encoder_forward(&j->nograd, j->pipe->text, j->ids_u, j->keep_u, 1, M);
    if (!u) return DA_ERR_INVALID;
    memcpy(j->ctx_u, u->data, u->size * sizeof(float));
    return DA_OK;
}

/* ---- the guided model output ------------------------------------------------- */

/* the text side of nr rows of ids (floats): ctx and keep rows [0, nr) the
 * empty prompt and [nr, 2nr) the prompts when guided, else [0, nr) the
 * prompts. The text encoder is frozen: encoded without a tape record. */
static da_status prep_rows(rlw_job *j, const float *ids_f, int nr)
{
    size_t TD = (size_t)j->T * j->D, c0 = j->guided ? (size_t)nr : 0;
    for (int i = 0; i < nr * M; i++) {
        j->ids[i] = (int)ids_f[i];
        j->keep[c0 * M + i] = j->ids[i] != DA_TOK_PAD;
    }
    da_tape_reset(&j->nograd);
    da_tensor *c = da_text_encoder_forward(&j->nograd, j->pipe->text, j->ids, j->keep + c0 * M, nr, M);
    if (!c) return DA_ERR_INVALID;
    memcpy(j->ctx + c0 * TD, c->data, c->size * sizeof(float));
    for (int r = 0; j->guided && r < nr; r++) {
        memcpy(j->ctx + r * TD, j->ctx_u, TD * sizeof(float));
        memcpy(j->keep + (size_t)r * M, j->keep_u, M);
    }
    return DA_OK;
}

/* eps (nr, C, h, w) = eps_u + w (eps_c - eps_u) of UNet u at x (nr, L),
 * row r at timestep t[r], on tape tp: one UNet call over 2nr rows, as the
 * pipeline's sampler does */
static da_tensor *guided_eps(da_tape *tp, const da_unet *u, rlw_job *j, const float *x, const int *t, int nr)
{
    int rows = j->guided ? 2 * nr : nr;
    size_t n = (size_t)nr * j->L;
    for (int k = 0; k < rows / nr; k++) {
        memcpy(j->xin + k * n, x, n * sizeof(float));
        for (int r = 0; r < nr; r++) j->ts[k * nr + r] = (float)t[r];
    }
    const da_vae_config *vc = &j->pipe->vae->cfg;
    int xs[4] = {rows, vc->latent_channels, j->pipe->latent_h, j->pipe->latent_w}, cs[3] = {rows, j->T, j->D};
    da_tensor *e = da_unet_forward(tp, u, da_leaf(tp, j->xin, NULL, 4, xs), j->ts, da_leaf(tp, j->ctx, NULL, 3, cs),
                                   j->keep);
    if (!e || !j->guided) return e;
    da_tensor *eu = da_narrow(tp, e, 0, 0, nr), *ec = da_narrow(tp, e, 0, nr, nr);
    return da_add(tp, eu, da_scale(tp, da_sub(tp, ec, eu), j->o.sample.cfg));
}

/* ---- chunks: the k-th trained step of rows [r0, r0 + nr) ------------------- */

static void gather_chunk(rlw_job *j, int r0, int nr, int k)
{
    size_t L = (size_t)j->L, S1 = (size_t)j->S + 1;
    for (int r = 0; r < nr; r++) {
        size_t i = (size_t)(r0 + r), at = i * j->n_sel + k;
        int s = (int)j->b.sel[at];
        memcpy(j->xa + r * L, j->b.traj + (i * S1 + s) * L, L * sizeof(float));
        memcpy(j->xb + r * L, j->b.traj + (i * S1 + s + 1) * L, L * sizeof(float));
        j->trow[r] = j->ddim.timesteps[s];
        j->lpo[r] = j->b.lp_old[at];
        j->advc[r] = j->b.adv[i];
        if (j->b.mu_ref) memcpy(j->mur + r * L, j->b.mu_ref + at * L, L * sizeof(float));
    }
    j->rows = (rlw_rows){.R = nr, .n = L, .ddim = &j->ddim, .t = j->trow, .x = j->xa, .x_prev = j->xb,
                         .lp_old = j->lpo, .adv = j->advc, .mu_ref = j->b.mu_ref ? j->mur : NULL,
                         .mu = j->mu, .zeros = j->zeros, .clip_eps = j->o.clip_eps, .kl_coef = j->o.kl_coef,
                         .weight = 1.0f / ((float)nr * (float)j->n_sel), .lp = j->lp};
}

/* old log-probs (the policy's, by the training forward) and the base's
 * means, chunk by chunk as the updates will see them */
static da_status old_logprobs(rlw_job *j)
{
    int nr = j->n / j->o.minibatches;
    size_t L = (size_t)j->L;
    for (int mb = 0; mb < j->o.minibatches; mb++) {
        int r0 = mb * nr;
        da_status s = prep_rows(j, j->b.ids + (size_t)r0 * M, nr);
        for (int k = 0; s == DA_OK && k < j->n_sel; k++) {
            gather_chunk(j, r0, nr, k);
            da_tape_reset(&j->nograd);
            da_tensor *e = guided_eps(&j->nograd, j->policy, j, j->xa, j->trow, nr);
            if (!e) return DA_ERR_INVALID;
            for (int r = 0; r < nr; r++) {
                s = da_ddim_logprob_forward(&j->b.lp_old[(size_t)(r0 + r) * j->n_sel + k], e->data + r * L,
                                            j->xb + r * L, j->xa + r * L, &j->ddim, j->trow[r], 1, L);
                if (s != DA_OK) return s;
            }
            if (!j->b.mu_ref) continue;
            da_tape_reset(&j->nograd);
            e = guided_eps(&j->nograd, j->pipe->unet, j, j->xa, j->trow, nr);
            if (!e) return DA_ERR_INVALID;
            for (int r = 0; r < nr && s == DA_OK; r++)
                s = rlw_ddim_mean(&j->ddim, j->trow[r], e->data + r * L, j->xa + r * L, j->zeros,
                                  j->b.mu_ref + ((size_t)(r0 + r) * j->n_sel + k) * L, L);
        }
        if (s != DA_OK) return s;
    }
    return DA_OK;
}

/* ---- rollouts ------------------------------------------------------------------ */

static da_status draw_prompts(da_trainer *trn, rlw_job *j)
{
    int G = j->o.group;
    da_status s = DA_OK;
    for (int q = 0; s == DA_OK && q < j->o.prompts; q++) {
        char *cap = j->text + (size_t)q * DA_CAPTION_MAX;
        if (j->pool_n) {
            memcpy(cap, j->pool + (size_t)(da_rng_u32(&trn->data_rng) % (uint32_t)j->pool_n) * DA_CAPTION_MAX,
                   DA_CAPTION_MAX);
        } else {
            da_scene spec;
            s = dq_draw(&trn->data_rng, DA_SPLIT_TRAIN, &j->excluded, cap, &spec);
        }
        int ids[M];
        uint8_t keep[M];
        if (s == DA_OK) s = da_prompt_tokens(cap, ids, keep);
        for (int g = 0; s == DA_OK && g < G; g++) {
            j->prompts[q * G + g] = cap;
            for (int m = 0; m < M; m++) j->b.ids[(size_t)(q * G + g) * M + m] = (float)ids[m];
        }
    }
    return s;
}

/* n trajectories by the policy into j->roll (n, S + 1, L): x_T from its own
 * seed (shared by a group with --shared-noise), the step noise from another */
static da_status sample(da_trainer *trn, rlw_job *j)
{
    size_t L = (size_t)j->L, S1 = (size_t)j->S + 1;
    int n = j->n, G = j->o.group;
    for (int q = 0; q < j->o.prompts; q++) {
        uint64_t group_seed = da_rng_u64(&trn->noise_rng);
        for (int g = 0; g < G; g++) {
            int i = q * G + g;
            uint64_t xs = j->o.shared_noise ? group_seed : da_rng_u64(&trn->noise_rng);
            da_initial_latent(xs, j->roll + (size_t)i * S1 * L, L);
            da_rng_seed(&j->rngs[i], da_rng_u64(&trn->noise_rng));
        }
    }
    da_status s = prep_rows(j, j->b.ids, n);
    for (int st = 0; s == DA_OK && st < j->S; st++) {
        int t = j->ddim.timesteps[st];
        for (int i = 0; i < n; i++) {
            memcpy(j->xa + i * L, j->roll + ((size_t)i * S1 + st) * L, L * sizeof(float));
            j->trow[i] = t;
        }
        da_tape_reset(&j->nograd);
        da_tensor *e = guided_eps(&j->nograd, j->policy, j, j->xa, j->trow, n);
        if (!e) return DA_ERR_INVALID;
        for (int i = 0; s == DA_OK && i < n; i++)
            s = da_ddim_step_rng(&j->ddim, j->roll + ((size_t)i * S1 + st + 1) * L, NULL, e->data + i * L, t,
                                 j->xa + i * L, &j->rngs[i], j->noise, L);
    }
    return s;
}

static da_status score(da_trainer *trn, rlw_job *j)
{
    size_t L = (size_t)j->L, S1 = (size_t)j->S + 1;
    for (int i = 0; i < j->n; i++) memcpy(j->z + i * L, j->roll + ((size_t)i * S1 + j->S) * L, L * sizeof(float));
    da_status s = da_pipeline_decode(j->pipe, j->z, j->n, j->images);
    if (s == DA_OK) s = da_reward_score(j->reward, j->images, j->prompts, j->n, j->r);
    double sum = 0.0, sq = 0.0;
    for (int i = 0; s == DA_OK && i < j->n; i++) {
        if (!isfinite(j->r[i])) return da_fail(DA_ERR_INVALID, "reward %s gave %g for rollout %d", j->o.reward, (double)j->r[i], i);
        sum += j->r[i];
        sq += (double)j->r[i] * j->r[i];
    }
    if (s != DA_OK) return s;
    double mean = sum / j->n;
    int zero = 0, G = j->o.group;
    for (int q = 0; q < j->o.prompts; q++) {
        int same = 1;
        for (int g = 1; g < G; g++) same &= j->r[q * G + g] == j->r[q * G];
        zero += same;
    }
    da_trainer_metric(trn, "reward", mean);
    da_trainer_metric(trn, "reward_std", sqrt(fmax(sq / j->n - mean * mean, 0.0)));
    da_trainer_metric(trn, "zero_std", (double)zero / j->o.prompts);
    return DA_OK;
}

/* DDPO's timestep fraction: n_sel of the noisy steps of each trajectory,
 * in a random order of their own */
static void select_steps(da_trainer *trn, rlw_job *j)
{
    for (int i = 0; i < j->n; i++) {
        for (int k = 0; k < j->n_train; k++) j->perm[k] = j->train_steps[k];
        for (int k = j->n_train - 1; k > 0; k--) {
            int u = (int)(da_rng_u32(&trn->data_rng) % (uint32_t)(k + 1)), tmp = j->perm[k];
            j->perm[k] = j->perm[u];
            j->perm[u] = tmp;
        }
        for (int k = 0; k < j->n_sel; k++) j->b.sel[(size_t)i * j->n_sel + k] = (float)j->perm[k];
    }
}

/* RAFT: the best image of each prompt (the first on a tie) */
static void keep_best(da_trainer *trn, rlw_job *j)
{
    size_t L = (size_t)j->L;
    int G = j->o.group;
    double best_sum = 0.0;
    for (int q = 0; q < j->o.prompts; q++) {
        int b = q * G;
        for (int g = 1; g < G; g++)
            if (j->r[q * G + g] > j->r[b]) b = q * G + g;
        best_sum += j->r[b];
        memcpy(j->b.traj + q * L, j->z + (size_t)b * L, L * sizeof(float));
        memmove(j->b.ids + (size_t)q * M, j->b.ids + (size_t)b * M, M * sizeof(float));   /* b >= q */
    }
    da_trainer_metric(trn, "best_reward", best_sum / j->o.prompts);
}

static da_status rollouts(da_trainer *trn, rlw_job *j)
{
    da_status s = draw_prompts(trn, j);
    if (s == DA_OK) s = sample(trn, j);
    if (s == DA_OK) s = score(trn, j);
    if (s != DA_OK) return s;
    if (j->o.method == DA_RLW_RAFT) {
        keep_best(trn, j);
        return DA_OK;
    }
    if (j->o.method == DA_RLW_DDPO)
        rlw_tracker_update(&j->tracker, j->prompts, j->r, j->n, j->o.adv_eps, trn->step / j->per_iter, j->b.adv);
    else
        grpo_advantages(j->b.adv, j->r, j->o.prompts, j->o.group, j->o.adv_eps);
    float c = j->o.adv_clip;
    for (int i = 0; i < j->n; i++) j->b.adv[i] = j->b.adv[i] < -c ? -c : (j->b.adv[i] > c ? c : j->b.adv[i]);
    memcpy(j->b.traj, j->roll, (size_t)j->n * (j->S + 1) * j->L * sizeof(float));
    select_steps(trn, j);
    return old_logprobs(j);
}

/* ---- one update ------------------------------------------------------------------- */

/* DDPO / GRPO: the surrogate (+ KL) over every trained step of the
 * minibatch's trajectories, one tape per step position (DDPO's loop over
 * timesteps), the gradients summed in the parameters */
static da_status pg_update(da_trainer *tr, da_tape *t, rlw_job *j, int mb, float *loss)
{
    int nr = j->n / j->o.minibatches, r0 = mb * nr;
    double total = 0.0, ratio = 0.0, akl = 0.0, kl = 0.0;
    int clipped = 0;
    da_status s = prep_rows(j, j->b.ids + (size_t)r0 * M, nr);
    if (s != DA_OK) return s;
    for (int k = 0; k < j->n_sel; k++) {
        gather_chunk(j, r0, nr, k);
        da_tape_reset(t);
        da_tensor *e = guided_eps(t, j->policy, j, j->xa, j->trow, nr);
        da_tensor *l = e ? rlw_rows_node(t, e, &j->rows) : NULL;
        if (!l) return DA_ERR_INVALID;
        da_tape_backward(t, l);
        total += l->data[0];
        ratio += j->rows.ratio_sum, akl += j->rows.approx_kl_sum, kl += j->rows.kl_sum, clipped += j->rows.clipped;
    }
    *loss = (float)total;
    double cnt = (double)nr * j->n_sel;
    da_trainer_metric(tr, "clip_frac", clipped / cnt);
    da_trainer_metric(tr, "approx_kl", akl / cnt);
    da_trainer_metric(tr, "ratio", ratio / cnt);
    if (j->b.mu_ref) da_trainer_metric(tr, "kl_ref", kl / cnt);
    return DA_OK;
}

/* RAFT: eps-MSE (the pretraining loss, no caption dropout) on the kept images */
static da_status raft_update(da_trainer *tr, da_tape *t, rlw_job *j, int mb, float *loss)
{
    int nr = j->o.prompts / j->o.minibatches, r0 = mb * nr;
    size_t L = (size_t)j->L;
    int saved = j->guided;
    j->guided = 0;   /* conditional rows only */
    da_status s = prep_rows(j, j->b.ids + (size_t)r0 * M, nr);
    j->guided = saved;
    int64_t t64[4096];
    if (s == DA_OK) s = da_randint(&tr->noise_rng, t64, (size_t)nr, 0, j->pipe->sched.n_train);
    if (s != DA_OK) return s;
    for (int r = 0; r < nr; r++) j->trow[r] = (int)t64[r], j->ts[r] = (float)t64[r];
    da_randn(&tr->noise_rng, j->eps, (size_t)nr * L);
    s = da_add_noise(&j->pipe->sched, j->xin, j->b.traj + (size_t)r0 * L, j->eps, j->trow, nr, L);
    if (s != DA_OK) return s;
    const da_vae_config *vc = &j->pipe->vae->cfg;
    int xs[4] = {nr, vc->latent_channels, j->pipe->latent_h, j->pipe->latent_w}, cs[3] = {nr, j->T, j->D};
    da_tensor *e = da_unet_forward(t, j->policy, da_leaf(t, j->xin, NULL, 4, xs), j->ts, da_leaf(t, j->ctx, NULL, 3, cs),
                                   j->keep);
    da_tensor *l = e ? da_mse(t, e, da_leaf(t, j->eps, NULL, 4, xs)) : NULL;
    if (!l) return DA_ERR_INVALID;
    da_tape_backward(t, l);
    *loss = l->data[0];
    return DA_OK;
}

static da_status rlw_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    (void)micro;
    rlw_job *j = user;
    long pos = tr->step % j->per_iter;
    da_status s = pos == 0 ? rollouts(tr, j) : DA_OK;
    if (s != DA_OK) return s;
    int mb = (int)(pos % j->o.minibatches);
    return j->o.method == DA_RLW_RAFT ? raft_update(tr, t, j, mb, loss) : pg_update(tr, t, j, mb, loss);
}

/* ---- the run ------------------------------------------------------------------------ */

static da_status save_outputs(const rlw_job *j, const da_trainer *tr, const char *out_dir)
{
    char steps[32], iters[32], kl[32];
    snprintf(steps, sizeof steps, "%ld", tr->step);
    snprintf(iters, sizeof iters, "%ld", tr->step / j->per_iter);
    snprintf(kl, sizeof kl, "%.9g", (double)j->o.kl_coef);
    da_st_meta meta[] = {
        {"format", "dalign-unet"}, {"trained_by", (char *)da_rlw_method_name(j->o.method)}, {"init", (char *)j->o.init},
        {"reward", (char *)j->o.reward}, {"steps", steps}, {"iterations", iters}, {"kl_coef", kl},
    };
    /* staged, then renamed into place config last, all or none (dp_ship):
     * a rerun with --force never leaves new weights beside an old config */
    dp_ship sh;
    dp_ship_init(&sh);
    const char *staged;
    da_status s = dp_ship_add(&sh, out_dir, j->o.name, ".safetensors", &staged);
    if (s == DA_OK) s = da_trainer_save_weights(tr, staged, 0, meta, (int)(sizeof meta / sizeof meta[0]));
    if (s == DA_OK) s = dp_ship_add(&sh, out_dir, j->o.name, ".json", &staged);
    if (s == DA_OK) s = da_unet_config_save(&j->policy->cfg, staged);
    if (s == DA_OK) s = dp_ship_commit(&sh);
    else dp_ship_abort(&sh);
    return s;
}

static da_status make_trainer(rlw_job *j, const da_trainer_config *tc, const char *resume, da_trainer **out)
{
    da_status s = da_trainer_create(out, tc, &j->policy->params);
    if (s != DA_OK) return s;
    const rlw_buffer *b = &j->b;
    size_t n = (size_t)j->n, L = (size_t)j->L, ns = (size_t)(j->n_sel ? j->n_sel : 1);
    size_t Q = (size_t)j->o.prompts, pg = j->o.method != DA_RLW_RAFT;
    struct { const char *name; float *data; size_t n; } st[] = {
        {"ids", b->ids, (pg ? n : Q) * M}, {"traj", b->traj, (pg ? n * (size_t)(j->S + 1) : Q) * L},
        {"sel", b->sel, n * ns}, {"lp_old", b->lp_old, n * ns}, {"adv", b->adv, n},
        {"tracker", b->tracker, rlw_tracker_floats(TRACK_SLOTS, j->o.tracker_size > 0 ? j->o.tracker_size : 1)},
        {"fingerprint", b->fingerprint, N_FINGERPRINT}, {"mu_ref", b->mu_ref, n * ns * L},
    };
    size_t n_st = sizeof st / sizeof *st - (b->mu_ref ? 0 : 1);
    for (size_t i = 0; s == DA_OK && i < n_st; i++) s = da_trainer_add_state(*out, st[i].name, st[i].data, st[i].n);
    float want[N_FINGERPRINT];
    fingerprint(j, want);
    memcpy(b->fingerprint, want, sizeof want);
    if (s == DA_OK && resume) {
        s = da_trainer_resume(*out, resume);
        if (s == DA_OK && memcmp(b->fingerprint, want, sizeof want))
            s = da_fail(DA_ERR_INVALID, "cannot resume from %s: it was made with other %s options (prompts, group, "
                        "sampler, timestep fraction, epochs, minibatches, clip, KL, tracker, init or reward)",
                        resume, da_rlw_method_name(j->o.method));
    }
    if (s != DA_OK) {
        da_trainer_free(*out);
        *out = NULL;
    }
    return s;
}

da_status da_rlw_run(const da_trainer_config *tc, const da_rlw_opts *o, da_rlw_result *res)
{
    da_rlw_result r = {.exit_code = 1};
    const char *dir = da_weights_dir(o->weights_dir);
    const char *out_dir = o->out_dir ? o->out_dir : dir;
    da_status s = da_rlw_check(tc, o);
    if (s == DA_OK && !o->resume) s = dp_check_new_outputs(out_dir, o->name, o->force);
    rlw_job j;
    memset(&j, 0, sizeof j);
    da_trainer *tr = NULL;
    if (s == DA_OK) s = job_init(&j, o, dir, tc->seed);
    if (s == DA_OK && tc->progress)
        da_log(DA_LOG_INFO, "%s: %d prompts x %d rollouts, DDIM %d steps eta %g cfg %g (%d of %d noisy steps trained), "
                        "reward %s, init %s, weights %s, %d epochs x %d minibatches per iteration",
                tc->name, o->prompts, o->group, o->sample.steps, (double)o->sample.eta, (double)o->sample.cfg, j.n_sel,
                j.n_train, o->reward, o->init, dir, o->epochs, o->minibatches);
    if (s == DA_OK) s = make_trainer(&j, tc, o->resume, &tr);
    if (s == DA_OK) s = da_trainer_run(tr, rlw_step, &j);
    int done = s == DA_OK && !tr->stop_signal && tr->step >= tc->total_steps;
    if (done) s = save_outputs(&j, tr, out_dir);
    if (tr) {
        r.steps = tr->step;
        r.loss = tr->loss;
        r.stop_signal = tr->stop_signal;
        r.exit_code = da_trainer_exit_code(tr, s);
    }
    if (res) *res = r;
    da_trainer_free(tr);
    job_free(&j);
    return s;
}
