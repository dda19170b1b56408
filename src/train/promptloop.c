/* PromptLoop's RL trainer (docs/promptloop.md "The RL trainer"; design
 * §10): GRPO on the refiner alone; the diffusion model and the reward are
 * frozen black boxes. One iteration:
 *
 *   rollouts   Q queries, train split (or either with query_split_all;
 *              never an evaluation prompt's meaning:
 *              queries.h) x G rollouts each, sampled through the
 *              loop (da_loop_generate) at the writer temperature: every
 *              image has K written prompts and the observations they read
 *              (with keep_meaning a written prompt that means something
 *              else is still the action scored, but the image ignores it)
 *   reward     r_i = reward(image_i, query_i): the ORIGINAL query, never a
 *              written prompt
 *   advantage  A_i = (r_i - mean_g) / (std_g + eps) over image i's group,
 *              shared by the K prompts it was sampled with (grpo_advantages)
 *   log-probs  of every written token under the rollout policy ("old") and
 *              the reference refiner, by teacher forcing
 *   updates    E epochs x Mb minibatches of whole groups, one optimizer
 *              step each: grpo_loss (clipped token ratio, k3 KL)
 *
 * Harness step s is update (s mod E*Mb) of iteration s / (E*Mb); the
 * rollout buffer is trainer state (da_trainer_add_state), so a run stopped
 * between two updates resumes bit for bit. Everything an iteration draws
 * comes from the trainer's generators; group size and batch are options,
 * never the thread count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "dalign/train.h"
#include "train/grpo.h"
#include "train/pretrain.h"
#include "train/queries.h"

#define M DA_MAX_TOKENS
#define T_OUT (DA_MAX_TOKENS - 1)   /* teacher-forced slots: inputs out[0..M-2] predict out[1..M-1] */
#define N_FINGERPRINT 22

/* ---- options ---------------------------------------------------------------- */

da_promptloop_opts da_promptloop_defaults(void)
{
    da_promptloop_opts o = {
        .unet = "unet", .init = "refiner-ref", .reward = "faithful",
        .queries = 4, .group = 8, .shared_noise = 0,
        .loop = da_loop_opts_default(), .sample = da_sample_opts_default(),
        .epochs = 2, .minibatches = 2, .clip_eps = 0.2f, .kl_coef = 0.04f, .kl_to_old = 0, .adv_eps = 1e-4f,
    };
    o.loop.temperature = 1.0f;   /* rollouts explore; inference is greedy */
    return o;
}

void da_promptloop_trainer_defaults(da_trainer_config *tc, const da_promptloop_opts *o)
{
    *tc = da_trainer_defaults();
    tc->name = "promptloop";
    tc->total_steps = 100L * o->epochs * o->minibatches;   /* 100 iterations */
    tc->batch = o->queries * o->group / (o->minibatches > 0 ? o->minibatches : 1);
    tc->micro_batches = 1;
    tc->lr = 1e-5f;
    tc->min_lr = 1e-5f;
    tc->warmup = 0;
    tc->weight_decay = 0.0f;
    tc->clip = 1.0f;
    tc->ema_decay = 0.0f;   /* the policy is the last iterate, as PPO's */
    tc->log_every = 1;
}

da_status da_promptloop_check(const da_trainer_config *tc, const da_promptloop_opts *o)
{
    if (!o->name || !*o->name) return da_fail(DA_ERR_INVALID, "--name is required");
    if (!o->init || !o->unet || !o->reward) return da_fail(DA_ERR_INVALID, "no init refiner, UNet or reward named");
    if (o->queries < 1 || o->group < 2)
        return da_fail(DA_ERR_INVALID, "queries %d must be >= 1 and group %d >= 2 (advantages are relative to the group)",
                       o->queries, o->group);
    if (o->epochs < 1 || o->minibatches < 1 || o->queries % o->minibatches)
        return da_fail(DA_ERR_INVALID, "minibatches %d must divide the %d queries (a minibatch holds whole groups), "
                       "epochs %d >= 1", o->minibatches, o->queries, o->epochs);
    if (tc->batch != o->queries * o->group / o->minibatches || tc->micro_batches != 1)
        return da_fail(DA_ERR_INVALID, "trainer batch %d must be queries x group / minibatches = %d, one micro-batch",
                       tc->batch, o->queries * o->group / o->minibatches);
    if (tc->total_steps % ((long)o->epochs * o->minibatches))
        return da_fail(DA_ERR_INVALID, "steps %ld must be a whole number of iterations of %d updates", tc->total_steps,
                       o->epochs * o->minibatches);
    if (!(o->clip_eps > 0.0f && o->clip_eps < 1.0f)) return da_fail(DA_ERR_INVALID, "clip %g not in (0, 1)", (double)o->clip_eps);
    if (!(o->kl_coef >= 0.0f) || !isfinite(o->kl_coef)) return da_fail(DA_ERR_INVALID, "kl coefficient %g must be >= 0", (double)o->kl_coef);
    if (!(o->adv_eps > 0.0f)) return da_fail(DA_ERR_INVALID, "advantage eps must be > 0");
    if (!(o->loop.temperature > 0.0f) || !isfinite(o->loop.temperature))
        return da_fail(DA_ERR_INVALID, "rollout temperature %g must be > 0 (the ratio needs a distribution)",
                       (double)o->loop.temperature);
    return da_loop_opts_check(&o->loop, o->sample.steps);
}

/* ---- the job ---------------------------------------------------------------- */

/* the rollout buffer: R = n*K rows (image i, refinement k at i*K + k), all
 * floats so that the harness checkpoints it (ids < 2^24 are exact) */
typedef struct pl_buffer {
    float *x0;        /* (R, latent_n) */
    float *t;         /* (R) */
    float *query;     /* (R, M) ids */
    float *prompt;    /* (R, M) */
    float *out;       /* (R, M) */
    float *lp_old;    /* (R, T_OUT) */
    float *lp_ref;    /* (R, T_OUT) */
    float *adv;       /* (R) */
    float *fingerprint;   /* (N_FINGERPRINT) the options the buffer was made with */
} pl_buffer;

typedef struct pl_job {
    da_promptloop_opts o;
    da_pipeline *pipe;
    da_refiner *policy, *ref;
    da_reward *reward;
    dq_excluded excluded;         /* evaluation prompts: never a training query */
    int n, K, R, latent_n, per_iter;
    pl_buffer b;
    da_tape nograd;               /* old and reference log-probs */
    uint8_t allowed[64];          /* (V) ids the refiner may write */
    /* minibatch scratch, (rows of one minibatch) */
    int *ids_q, *ids_p, *ids_o, *target;
    uint8_t *keep_q, *keep_p;
    float *x0, *t, *weight, *adv, *lp_tmp;
} pl_job;

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* what a resumed buffer must have been made with */
static void fingerprint(const pl_job *j, float *f)
{
    const da_promptloop_opts *o = &j->o;
    uint32_t h[3] = {fnv1a(o->init), fnv1a(o->reward), fnv1a(o->unet)};
    /* a refinement window enters the hash slot, only when set: a run with
     * the whole trajectory keeps the fingerprint it had before the option
     * existed, so its checkpoints still resume */
    if (o->loop.window_first || o->loop.window_end) {
        char w[32];
        snprintf(w, sizeof w, "window %d:%d", o->loop.window_first, o->loop.window_end);
        h[2] ^= fnv1a(w);
    }
    float v[N_FINGERPRINT] = {
        (float)o->queries, (float)o->group, (float)o->shared_noise, (float)o->loop.mode, (float)j->K,
        o->loop.temperature, (float)o->sample.steps, o->sample.cfg, (float)o->sample.sampler, o->sample.eta,
        (float)o->epochs, (float)o->minibatches, o->clip_eps, o->kl_coef, (float)o->kl_to_old, o->adv_eps,
        (float)(h[0] & 0xffff), (float)(h[1] & 0xffff), (float)(h[2] & 0xffff), (float)((h[0] ^ h[1] ^ h[2]) >> 16),
        (float)o->query_split_all, (float)o->loop.keep_meaning,
    };
    memcpy(f, v, sizeof v);
}

static void job_free(pl_job *j)
{
    da_pipeline_free(j->pipe);
    da_refiner_free(j->policy);
    da_refiner_free(j->ref);
    da_reward_free(j->reward);
    dq_excluded_free(&j->excluded);
    da_tape_free(&j->nograd);
    float *f[] = {j->b.x0, j->b.t, j->b.query, j->b.prompt, j->b.out, j->b.lp_old, j->b.lp_ref, j->b.adv,
                  j->b.fingerprint, j->x0, j->t, j->weight, j->adv, j->lp_tmp};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) free(f[i]);
    free(j->ids_q); free(j->ids_p); free(j->ids_o); free(j->target); free(j->keep_q); free(j->keep_p);
}

static da_status job_alloc(pl_job *j)
{
    size_t R = (size_t)j->R, L = (size_t)j->latent_n, rows = R / j->o.minibatches;
    pl_buffer *b = &j->b;
    b->x0 = malloc(R * L * sizeof(float));
    b->t = malloc(R * sizeof(float));
    b->query = malloc(R * M * sizeof(float));
    b->prompt = malloc(R * M * sizeof(float));
    b->out = malloc(R * M * sizeof(float));
    b->lp_old = malloc(R * T_OUT * sizeof(float));
    b->lp_ref = malloc(R * T_OUT * sizeof(float));
    b->adv = malloc(R * sizeof(float));
    b->fingerprint = malloc(N_FINGERPRINT * sizeof(float));
    j->x0 = malloc(rows * L * sizeof(float));
    j->t = malloc(rows * sizeof(float));
    j->weight = malloc(rows * T_OUT * sizeof(float));
    j->adv = malloc(rows * T_OUT * sizeof(float));
    j->lp_tmp = malloc(rows * T_OUT * sizeof(float));
    j->ids_q = malloc(rows * M * sizeof(int));
    j->ids_p = malloc(rows * M * sizeof(int));
    j->ids_o = malloc(rows * T_OUT * sizeof(int));
    j->target = malloc(rows * T_OUT * sizeof(int));
    j->keep_q = malloc(rows * M);
    j->keep_p = malloc(rows * M);
    if (!b->x0 || !b->t || !b->query || !b->prompt || !b->out || !b->lp_old || !b->lp_ref || !b->adv ||
        !b->fingerprint || !j->x0 || !j->t || !j->weight || !j->adv || !j->lp_tmp || !j->ids_q || !j->ids_p ||
        !j->ids_o || !j->target || !j->keep_q || !j->keep_p)
        return da_fail(DA_ERR_NOMEM, "promptloop: out of memory for %d rollouts", j->n);
    return DA_OK;
}

static da_status load_refiner(const char *dir, const char *name, int trainable, da_refiner **out)
{
    da_refiner *frozen;
    da_status s = da_weights_load_refiner(&frozen, dir, name);
    if (s != DA_OK || !trainable) {
        *out = s == DA_OK ? frozen : NULL;
        return s;
    }
    /* the policy: the same weights in a model with gradients */
    *out = da_refiner_create(&frozen->cfg, 1);
    if (!*out) s = DA_ERR_NOMEM;
    else memcpy((*out)->params.data, frozen->params.data, frozen->params.total * sizeof(float));
    da_refiner_free(frozen);
    return s;
}

static da_status job_init(pl_job *j, const da_promptloop_opts *o, const char *dir)
{
    j->o = *o;
    j->K = da_loop_n_refine(&o->loop);
    j->n = o->queries * o->group;
    j->R = j->n * j->K;
    j->per_iter = o->epochs * o->minibatches;
    da_tape_init(&j->nograd, 1 << 22);
    da_tape_set_grad(&j->nograd, 0);
    da_status s = da_weights_load_pipeline(&j->pipe, dir, o->unet);
    if (s == DA_OK) s = load_refiner(dir, o->init, 1, &j->policy);
    if (s == DA_OK) s = load_refiner(dir, o->init, 0, &j->ref);
    if (s == DA_OK) s = da_reward_create(&j->reward, o->reward, dir);
    if (s == DA_OK) s = dq_excluded_init(&j->excluded);
    if (s != DA_OK) return s;
    j->latent_n = j->pipe->vae->cfg.latent_channels * j->pipe->latent_h * j->pipe->latent_w;
    int V = j->policy->cfg.vocab_size;
    if (V > (int)sizeof j->allowed) return da_fail(DA_ERR_INVALID, "refiner vocabulary %d too large", V);
    for (int v = 0; v < V; v++) j->allowed[v] = (uint8_t)da_refiner_token_allowed(v);
    return job_alloc(j);
}

/* ---- teacher forcing over buffer rows -------------------------------------- */

/* the target slots of a written row (BOS .. EOS PAD..) that were sampled:
 * slots 0 .. n-1 predict out[1..n]; the EOS counts when it was sampled, not
 * when it was forced at the last slot */
static int sampled_tokens(const float *out)
{
    int eos = M - 1;   /* slot of the EOS: sampled before the last slot, or forced there */
    for (int m = 1; m < M; m++)
        if ((int)out[m] == DA_TOK_EOS) { eos = m; break; }
    return eos < M - 1 ? eos : M - 2;
}

/* rows [r0, r0 + nr) of the buffer into the minibatch scratch: inputs,
 * targets and, for each token slot, its weight 1 / (nr * tokens of its
 * prompt) (0 past the EOS and at a forced EOS) and its row's advantage */
static void gather_rows(pl_job *j, int r0, int nr)
{
    const pl_buffer *b = &j->b;
    for (int r = 0; r < nr; r++) {
        size_t src = (size_t)(r0 + r);
        memcpy(j->x0 + (size_t)r * j->latent_n, b->x0 + src * j->latent_n, (size_t)j->latent_n * sizeof(float));
        j->t[r] = b->t[src];
        for (int m = 0; m < M; m++) {
            int q = (int)b->query[src * M + m], p = (int)b->prompt[src * M + m];
            j->ids_q[r * M + m] = q;
            j->keep_q[r * M + m] = q != DA_TOK_PAD;
            j->ids_p[r * M + m] = p;
            j->keep_p[r * M + m] = p != DA_TOK_PAD;
        }
        const float *out = b->out + src * M;
        int tokens = sampled_tokens(out);
        for (int s = 0; s < T_OUT; s++) {
            j->ids_o[r * T_OUT + s] = (int)out[s];
            j->target[r * T_OUT + s] = (int)out[s + 1];
            j->weight[r * T_OUT + s] = s < tokens ? 1.0f / ((float)nr * (float)tokens) : 0.0f;
            j->adv[r * T_OUT + s] = b->adv[src];
        }
    }
}

/* logits (nr * T_OUT, V) of the gathered rows under model m */
static da_tensor *forward_rows(da_tape *t, const pl_job *j, const da_refiner *m, int nr)
{
    da_tensor *logits = da_refiner_forward(t, m, j->x0, j->t, j->ids_q, j->keep_q, j->ids_p, j->keep_p, j->ids_o, nr,
                                           T_OUT);
    if (!logits) return NULL;
    int flat[2] = {nr * T_OUT, m->cfg.vocab_size};
    return da_reshape(t, logits, 2, flat);
}

/* the buffer's per-token log-probs under model m, in the updates' minibatches */
static da_status token_logprobs(pl_job *j, const da_refiner *m, float *lp)
{
    int nr = j->R / j->o.minibatches;
    for (int mb = 0; mb < j->o.minibatches; mb++) {
        gather_rows(j, mb * nr, nr);
        da_tape_reset(&j->nograd);
        da_tensor *x = forward_rows(&j->nograd, j, m, nr);
        if (!x) return DA_ERR_INVALID;
        grpo_token_logprobs(lp + (size_t)mb * nr * T_OUT, x->data, j->target, j->allowed, nr * T_OUT, x->shape[1]);
    }
    return DA_OK;
}

/* ---- rollouts ------------------------------------------------------------------ */

/* the largest |log-prob of a written prompt as sampled - by teacher forcing
 * of the buffer row|: rounding (about 1e-6) when the buffer holds exactly
 * the tokens the writer drew (temperature 1); anything larger means the
 * updates would score other actions than the rollouts took */
static double logprob_gap(const pl_job *j, const da_loop_trace *tr)
{
    double gap = 0.0;
    for (int r = 0; r < j->R; r++) {
        int tokens = sampled_tokens(j->b.out + (size_t)r * M);
        double sum = 0.0;
        for (int s = 0; s < tokens; s++) sum += j->b.lp_old[(size_t)r * T_OUT + s];
        gap = fmax(gap, fabs(sum - (double)tr->logprobs[r]));
    }
    return gap;
}

typedef struct rollout_health {
    double reward_mean, reward_std, faith, prompt_len, parse, meaning;
    int zero_std;
} rollout_health;

/* written prompts: mean length, and the shares that parse and that mean the query */
static void prompt_health(const da_loop_trace *tr, rollout_health *h)
{
    int rows = tr->n * tr->K, parsed = 0, same = 0;
    double len = 0.0;
    for (int r = 0; r < rows; r++) {
        const int *out = tr->out_ids + (size_t)r * M;
        int n = 1;
        while (n < M && out[n] != DA_TOK_EOS) n++;
        len += n - 1;
        da_scene spec, want;
        if (da_parse_prompt_ids(out, &spec) != DA_OK) continue;
        parsed++;
        if (da_parse_prompt_ids(tr->query_ids + (size_t)(r / tr->K) * M, &want) == DA_OK &&
            da_spec_same_meaning(&spec, &want))
            same++;
    }
    h->prompt_len = len / rows;
    h->parse = (double)parsed / rows;
    h->meaning = (double)same / rows;
}

static da_status score(pl_job *j, const float *images, const char *const *queries, float *r, rollout_health *h)
{
    da_status s = da_reward_score(j->reward, images, queries, j->n, r);
    double sum = 0.0, sq = 0.0, faith = 0.0;
    for (int i = 0; s == DA_OK && i < j->n; i++) {
        if (!isfinite(r[i])) return da_fail(DA_ERR_INVALID, "reward %s gave %g for rollout %d", j->o.reward, (double)r[i], i);
        float f = 0.0f;
        s = da_faithfulness(images + (size_t)i * DA_IMG_FLOATS, queries[i], NULL, &f);
        faith += f;
        sum += r[i];
        sq += (double)r[i] * r[i];
    }
    h->reward_mean = sum / j->n;
    h->reward_std = sqrt(fmax(sq / j->n - h->reward_mean * h->reward_mean, 0.0));
    h->faith = faith / j->n;
    return s;
}

/* trace -> buffer rows */
static void fill_buffer(pl_job *j, const da_loop_trace *tr, const float *adv_img)
{
    pl_buffer *b = &j->b;
    memcpy(b->x0, tr->x0, (size_t)j->R * j->latent_n * sizeof(float));
    memcpy(b->t, tr->timesteps, (size_t)j->R * sizeof(float));
    for (int r = 0; r < j->R; r++) {
        int i = r / j->K;
        for (int m = 0; m < M; m++) {
            b->query[(size_t)r * M + m] = (float)tr->query_ids[(size_t)i * M + m];
            b->prompt[(size_t)r * M + m] = (float)tr->prompt_ids[(size_t)r * M + m];
            b->out[(size_t)r * M + m] = (float)tr->out_ids[(size_t)r * M + m];
        }
        b->adv[r] = adv_img[i];
    }
}

static da_status rollouts(da_trainer *trn, pl_job *j)
{
    int n = j->n, G = j->o.group;
    char *text = calloc((size_t)j->o.queries, DA_CAPTION_MAX);
    const char **queries = malloc((size_t)n * sizeof *queries);
    uint64_t *seeds = malloc((size_t)n * sizeof *seeds), *rseeds = malloc((size_t)n * sizeof *rseeds);
    float *images = malloc((size_t)n * DA_IMG_FLOATS * sizeof(float));
    float *r = malloc((size_t)n * sizeof(float)), *adv = malloc((size_t)n * sizeof(float));
    da_status s = text && queries && seeds && rseeds && images && r && adv ? DA_OK
                                                                            : da_fail(DA_ERR_NOMEM, "out of memory");
    for (int q = 0; s == DA_OK && q < j->o.queries; q++) {
        da_scene spec;
        char *cap = text + (size_t)q * DA_CAPTION_MAX;
        s = dq_draw(&trn->data_rng, dq_split(&trn->data_rng, j->o.query_split_all), &j->excluded, cap, &spec);
        uint64_t group_seed = da_rng_u64(&trn->noise_rng);
        for (int g = 0; g < G; g++) {
            int i = q * G + g;
            queries[i] = cap;
            seeds[i] = j->o.shared_noise ? group_seed : da_rng_u64(&trn->noise_rng);
            rseeds[i] = da_rng_u64(&trn->noise_rng);
        }
    }
    da_loop_trace tr;
    memset(&tr, 0, sizeof tr);
    rollout_health h = {0};
    if (s == DA_OK)
        s = da_loop_generate(j->pipe, j->policy, &j->o.sample, &j->o.loop, queries, seeds, rseeds, n, &tr, images, NULL);
    if (s == DA_OK) s = score(j, images, queries, r, &h);
    if (s == DA_OK) {
        h.zero_std = grpo_advantages(adv, r, j->o.queries, G, j->o.adv_eps);
        prompt_health(&tr, &h);
        fill_buffer(j, &tr, adv);
        s = token_logprobs(j, j->policy, j->b.lp_old);
        if (s == DA_OK && j->o.loop.temperature == 1.0f) da_trainer_metric(trn, "lp_gap", logprob_gap(j, &tr));
    }
    /* the KL's anchor: the reference refiner, or (the paper's) the rollout policy */
    if (s == DA_OK && j->o.kl_to_old) memcpy(j->b.lp_ref, j->b.lp_old, (size_t)j->R * T_OUT * sizeof(float));
    else if (s == DA_OK) s = token_logprobs(j, j->ref, j->b.lp_ref);
    if (s == DA_OK) {
        da_trainer_metric(trn, "reward", h.reward_mean);
        da_trainer_metric(trn, "reward_std", h.reward_std);
        da_trainer_metric(trn, "zero_std", (double)h.zero_std / j->o.queries);
        da_trainer_metric(trn, "faith", h.faith);
        da_trainer_metric(trn, "prompt_len", h.prompt_len);
        da_trainer_metric(trn, "parse", h.parse);
        da_trainer_metric(trn, "meaning", h.meaning);
    }
    da_loop_trace_free(&tr);
    free(text); free(queries); free(seeds); free(rseeds); free(images); free(r); free(adv);
    return s;
}

/* ---- one update ------------------------------------------------------------------- */

static da_status pl_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    (void)micro;
    pl_job *j = user;
    long pos = tr->step % j->per_iter;
    da_status s = pos == 0 ? rollouts(tr, j) : DA_OK;
    if (s != DA_OK) return s;
    int mb = (int)(pos % j->o.minibatches), nr = j->R / j->o.minibatches;
    size_t r0 = (size_t)mb * nr;
    gather_rows(j, (int)r0, nr);
    da_tensor *logits = forward_rows(t, j, j->policy, nr);
    if (!logits) return DA_ERR_INVALID;
    grpo_rows *a = da_arena_alloc(&t->arena, sizeof *a);
    *a = (grpo_rows){.R = nr * T_OUT, .V = logits->shape[1], .target = j->target, .weight = j->weight,
                     .lp_old = j->b.lp_old + r0 * T_OUT, .lp_ref = j->b.lp_ref + r0 * T_OUT, .adv = j->adv,
                     .allowed = j->allowed, .clip_eps = j->o.clip_eps, .kl_coef = j->o.kl_coef, .lp = j->lp_tmp};
    da_tensor *l = grpo_loss_node(t, logits, a);
    da_tape_backward(t, l);
    *loss = l->data[0];
    int n = a->st.n ? a->st.n : 1;
    da_trainer_metric(tr, "clip_frac", (double)a->st.clipped / n);
    da_trainer_metric(tr, "kl", a->st.kl_sum / n);
    da_trainer_metric(tr, "ratio", a->st.ratio_sum / n);
    return DA_OK;
}

/* ---- the run ------------------------------------------------------------------------ */

static da_status save_outputs(const pl_job *j, const da_trainer *tr, const char *out_dir)
{
    char steps[32], iters[32], kl[32], window[32];
    snprintf(steps, sizeof steps, "%ld", tr->step);
    snprintf(window, sizeof window, "%d:%d", j->o.loop.window_first,
             j->o.loop.window_end ? j->o.loop.window_end : j->o.sample.steps);
    snprintf(iters, sizeof iters, "%ld", tr->step / j->per_iter);
    snprintf(kl, sizeof kl, "%.9g", (double)j->o.kl_coef);
    da_st_meta meta[] = {
        {"format", "dalign-refiner"}, {"trained_by", "grpo"}, {"init", (char *)j->o.init},
        {"reward", (char *)j->o.reward}, {"refine_mode", (char *)da_refine_mode_name(j->o.loop.mode)},
        {"steps", steps}, {"iterations", iters}, {"kl_coef", kl},
        {"query_split", j->o.query_split_all ? "all" : "train"},
        {"refine_keep_meaning", j->o.loop.keep_meaning ? "true" : "false"},
        {NULL, NULL},   /* refine_window, below */
    };
    int n_meta = (int)(sizeof meta / sizeof meta[0]) - 1;
    /* the steps its refinements were spread over, only when a window was
     * set: without one it refines over the whole trajectory, whatever its
     * length */
    if (j->o.loop.window_first || j->o.loop.window_end) meta[n_meta++] = (da_st_meta){"refine_window", window};
    /* staged, then renamed into place config last, all or none (dp_ship):
     * a rerun with --force never leaves new weights beside an old config */
    dp_ship sh;
    dp_ship_init(&sh);
    const char *staged;
    da_status s = dp_ship_add(&sh, out_dir, j->o.name, ".safetensors", &staged);
    if (s == DA_OK) s = da_trainer_save_weights(tr, staged, 0, meta, n_meta);
    if (s == DA_OK) s = dp_ship_add(&sh, out_dir, j->o.name, ".json", &staged);
    if (s == DA_OK) s = da_refiner_config_save(&j->policy->cfg, staged);
    if (s == DA_OK) s = dp_ship_commit(&sh);
    else dp_ship_abort(&sh);
    return s;
}

/* create the harness over the policy, register the buffer, resume */
static da_status make_trainer(pl_job *j, const da_trainer_config *tc, const char *resume, da_trainer **out)
{
    da_status s = da_trainer_create(out, tc, &j->policy->params);
    if (s != DA_OK) return s;
    const pl_buffer *b = &j->b;
    size_t R = (size_t)j->R;
    struct { const char *name; float *data; size_t n; } st[] = {
        {"x0", b->x0, R * j->latent_n}, {"t", b->t, R}, {"query", b->query, R * M}, {"prompt", b->prompt, R * M},
        {"out", b->out, R * M}, {"lp_old", b->lp_old, R * T_OUT}, {"lp_ref", b->lp_ref, R * T_OUT},
        {"adv", b->adv, R}, {"fingerprint", b->fingerprint, N_FINGERPRINT},
    };
    for (size_t i = 0; s == DA_OK && i < sizeof st / sizeof *st; i++) s = da_trainer_add_state(*out, st[i].name, st[i].data, st[i].n);
    float want[N_FINGERPRINT];
    fingerprint(j, want);
    memcpy(b->fingerprint, want, sizeof want);
    if (s == DA_OK && resume) {
        s = da_trainer_resume(*out, resume);
        if (s == DA_OK && memcmp(b->fingerprint, want, sizeof want))
            s = da_fail(DA_ERR_INVALID, "cannot resume from %s: it was made with other PromptLoop options (queries, "
                        "group, refinements, refinement window, temperature, sampler, epochs, minibatches, clip, KL, init, "
                        "reward, UNet, query split or the meaning guard)",
                        resume);
    }
    if (s != DA_OK) {
        da_trainer_free(*out);
        *out = NULL;
    }
    return s;
}

da_status da_promptloop_run(const da_trainer_config *tc, const da_promptloop_opts *o, da_promptloop_result *res)
{
    da_promptloop_result r = {.exit_code = 1};
    const char *dir = da_weights_dir(o->weights_dir);
    const char *out_dir = o->out_dir ? o->out_dir : dir;
    da_status s = da_promptloop_check(tc, o);
    if (s == DA_OK && !o->resume) s = dp_check_new_outputs(out_dir, o->name, o->force);
    pl_job j;
    memset(&j, 0, sizeof j);
    da_trainer *tr = NULL;
    if (s == DA_OK) s = job_init(&j, o, dir);
    if (s == DA_OK && tc->progress) {
        char when[128];
        da_loop_steps_text(&o->loop, o->sample.steps, when, sizeof when);
        da_log(DA_LOG_INFO, "%s: %d queries x %d rollouts, %s with %d refinement(s) (%s) at temperature %g, "
                            "reward %s, init %s, weights %s, %d epochs x %d minibatches per iteration",
               tc->name, o->queries, o->group, da_refine_mode_name(o->loop.mode), j.K, when,
               (double)o->loop.temperature, o->reward, o->init, dir, o->epochs, o->minibatches);
    }
    if (s == DA_OK) s = make_trainer(&j, tc, o->resume, &tr);
    if (s == DA_OK) s = da_trainer_run(tr, pl_step, &j);
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
