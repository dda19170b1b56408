/* The PromptLoop reference refiner, supervised (`dalign train refiner`;
 * docs/promptloop.md has the long form).
 *
 *   start:     the observation bank: for N train-split queries (shapes-world
 *              captions, so the phrasing varies) the frozen base pipeline's
 *              x̂0 and timestep at every sampler step, one noise seed each,
 *              plus the trajectories of held-back validation queries of both
 *              splits; cached in a file, rebuilt when its settings change
 *   per step:  B examples from tr->data_rng: a query q and an observation
 *              (its trajectory's x̂0 at a random step, or a zero latent: the
 *              apriori / once modes), the prompt in use (q or a paraphrase
 *              of it), the target: a fresh paraphrase of q, BOS .. EOS;
 *              loss = mean token cross-entropy of the target under teacher
 *              forcing, over the ids generation may write (rs_loss)
 *   validation: the meaning rate: the share of written prompts that parse
 *              and mean the query, on held-back queries of the train split
 *              and of the held-out split, at temperature 1 and 0
 *
 * Everything random in training comes from the trainer's RNG, the bank is
 * a pure function of its settings and the validation has its own fixed
 * generators, so a resumed run continues bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/safetensors_meta.h"
#include "dalign/train.h"
#include "train/pretrain.h"
#include "train/refiner_sup.h"

#define M DA_MAX_TOKENS
#define BANK_CHUNK 32             /* queries per pipeline call while building the bank */
#define QUERY_SEED_XOR 0x5eedc0deull
#define NOISE_SEED_XOR 0x0b5e7e0dull
#define VAL_SEED_XOR 0x7a1d5eedull
#define HELDOUT_SEED_XOR 0x4e1d0a7ull
#define WRITER_SEED 0x7e57ab1eull  /* validation generators (per split and temperature) */
#define MAX_TRIES 100000          /* draws for distinct validation queries / fresh queries */
#define EXCLUDED_LOGIT (-1e9f)    /* bias of PAD, BOS and UNK in the loss */

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

void da_refiner_sup_defaults(da_trainer_config *tc, da_refiner_sup_opts *o)
{
    da_trainer_config c = da_trainer_defaults();
    c.name = "refiner";
    c.total_steps = 15000;   /* the meaning rate passes 0.95 after about 9000; 68 min on one core */
    c.batch = 32;
    c.lr = 1e-3f;
    c.min_lr = 1e-5f;
    c.warmup = 200;
    c.schedule = DA_LR_COSINE;
    c.weight_decay = 0.01f;
    c.clip = 1.0f;
    c.ema_decay = 0.0f;      /* the cosine ends at min_lr: no EMA needed (docs/promptloop.md) */
    c.log_every = 10;
    c.ckpt_every = 500;
    memset(o, 0, sizeof *o);
    o->unet = "unet";
    o->model = da_refiner_config_default();
    o->bank_size = 1024;
    o->val_queries = 128;
    o->sample = da_sample_opts_default();
    o->p_blind = 0.25f;
    o->p_query_prompt = 0.5f;
    o->fresh_blind = 1;
    o->query_split_all = 1;  /* held-out compositions as text: docs/promptloop.md */
    o->n_refine = 4;
    o->val_every = 1000;
    o->val_quick = 32;
    *tc = c;
}

static da_status check_share(const char *opt, float p)
{
    if (!(p >= 0.0f && p <= 1.0f)) return da_fail(DA_ERR_INVALID, "%s must be in [0, 1], got %g", opt, (double)p);
    return DA_OK;
}

da_status da_refiner_sup_check(const da_trainer_config *tc, const da_refiner_sup_opts *o)
{
    if (!o->name || !*o->name || strchr(o->name, '/') || !da_metric_name_ok(o->name))
        return da_fail(DA_ERR_INVALID, "--name must be a plain file name of letters, digits, '_', '.', '-' "
                                       "(the output is OUT/NAME.safetensors + NAME.json)");
    if (!o->unet || !*o->unet) return da_fail(DA_ERR_INVALID, "--unet must name a UNet");
    da_status s = da_refiner_config_check(&o->model);
    if (s != DA_OK) return s;
    if (o->model.vocab_size != da_vocab_size() || o->model.max_tokens != DA_MAX_TOKENS)
        return da_fail(DA_ERR_INVALID, "the refiner's vocabulary (%d ids, %d per text) is not the tokenizer's (%d, %d)",
                       o->model.vocab_size, o->model.max_tokens, da_vocab_size(), DA_MAX_TOKENS);
    if (o->bank_size < 1 || o->bank_size > 1000000)
        return da_fail(DA_ERR_INVALID, "--bank-size must be in [1, 1000000], got %d", o->bank_size);
    if (o->val_queries < 0 || o->val_queries > 100000)
        return da_fail(DA_ERR_INVALID, "--val-queries must be in [0, 100000], got %d", o->val_queries);
    if (o->sample.steps < 1 || o->sample.steps > 1000)
        return da_fail(DA_ERR_INVALID, "--bank-steps must be in [1, 1000], got %d", o->sample.steps);
    if (!isfinite(o->sample.cfg)) return da_fail(DA_ERR_INVALID, "--cfg must be finite");
    if ((s = check_share("--p-blind", o->p_blind)) != DA_OK) return s;
    if ((s = check_share("--p-query-prompt", o->p_query_prompt)) != DA_OK) return s;
    if (o->n_refine < 1 || o->n_refine > o->sample.steps)
        return da_fail(DA_ERR_INVALID, "--val-refine %d must be in [1, %d] (the bank's steps)", o->n_refine,
                       o->sample.steps);
    if (o->val_every < 0) return da_fail(DA_ERR_INVALID, "--val-every must be >= 0, got %d", o->val_every);
    if (o->val_every > 0 && o->val_every % tc->log_every != 0)
        return da_fail(DA_ERR_INVALID, "--val-every %d must be a multiple of --log-every %ld (its line is logged)",
                       o->val_every, tc->log_every);
    if (o->val_quick < 1 && o->val_every > 0)
        return da_fail(DA_ERR_INVALID, "--val-quick must be >= 1 when --val-every is set");
    if (tc->micro_batches != 1) return da_fail(DA_ERR_INVALID, "the refiner trainer takes no micro-batches");
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* The bank: queries                                                        */
/* ------------------------------------------------------------------------ */

int rs_bank_first(const rs_bank *b, int group)
{
    return group == RS_ROWS_TRAIN ? 0 : group == RS_ROWS_VAL ? b->n_train : b->n_train + b->n_val;
}

void rs_bank_free(rs_bank *b)
{
    if (!b) return;
    free(b->x0);
    free(b->timesteps);
    free(b->query_ids);
    free(b->query_keep);
    free(b->specs);
    free(b->text);
    dq_excluded_free(&b->excluded);
    memset(b, 0, sizeof *b);
}

/* a caption of a fresh scene of the split, and its parse */
static da_status draw_query(da_rng *rng, da_split split, char *text, da_scene *spec)
{
    da_scene scene;
    da_status s = da_world_example(rng, split, &scene, NULL, text, DA_CAPTION_MAX);
    if (s == DA_OK) s = da_parse_prompt(text, spec);
    return s;
}

static int meaning_among(const da_scene *spec, const da_scene *set, int n)
{
    for (int i = 0; i < n; i++)
        if (da_spec_same_meaning(spec, &set[i])) return 1;
    return 0;
}

/* row i of b: text, parse, tokens */
static da_status set_query(rs_bank *b, int i, const char *text, const da_scene *spec)
{
    snprintf(b->text[i], DA_CAPTION_MAX, "%s", text);
    b->specs[i] = *spec;
    return da_prompt_tokens(text, b->query_ids + (size_t)i * M, b->query_keep + (size_t)i * M);
}

/* n_val queries of the split from rng into rows [first, first + n_val): none
 * means what a training query means, nor what an earlier one of the group means */
static da_status draw_val_group(rs_bank *b, da_rng *rng, da_split split, int first)
{
    char text[DA_CAPTION_MAX];
    da_scene spec;
    long tries = 0;
    for (int i = 0; i < b->n_val; i++) {
        do {
            if (++tries > MAX_TRIES)
                return da_fail(DA_ERR_RANGE, "cannot draw %d %s validation queries whose meanings differ from "
                                             "the %d training queries' (lower --val-queries or --bank-size)",
                               b->n_val, split == DA_SPLIT_TRAIN ? "train-split" : "held-out", b->n_train);
            da_status s = draw_query(rng, split, text, &spec);
            if (s != DA_OK) return s;
        } while (meaning_among(&spec, b->specs, b->n_train) || meaning_among(&spec, b->specs + first, i));
        da_status s = set_query(b, first + i, text, &spec);
        if (s != DA_OK) return s;
    }
    return DA_OK;
}

da_status rs_bank_queries(rs_bank *b, const rs_bank_settings *st)
{
    memset(b, 0, sizeof *b);
    b->n_train = st->n_train;
    b->n_val = st->n_val;
    b->n = st->n_train + 2 * st->n_val;
    b->steps = st->sample.steps;
    size_t n = (size_t)b->n;
    b->query_ids = malloc(n * M * sizeof *b->query_ids);
    b->query_keep = malloc(n * M);
    b->specs = malloc(n * sizeof *b->specs);
    b->text = malloc(n * sizeof *b->text);
    if (!b->query_ids || !b->query_keep || !b->specs || !b->text) {
        rs_bank_free(b);
        return da_fail(DA_ERR_NOMEM, "bank: out of memory for %d queries", b->n);
    }
    /* one generator per group: the training queries do not depend on n_val */
    da_rng rng;
    da_rng_seed(&rng, st->seed ^ QUERY_SEED_XOR);
    char text[DA_CAPTION_MAX];
    da_scene spec;
    da_status s = dq_excluded_init(&b->excluded);
    for (int i = 0; i < b->n_train && s == DA_OK; i++) {
        s = dq_draw(&rng, dq_split(&rng, st->all_splits), &b->excluded, text, &spec);
        if (s == DA_OK) s = set_query(b, i, text, &spec);
    }
    da_rng_seed(&rng, st->seed ^ VAL_SEED_XOR);
    if (s == DA_OK) s = draw_val_group(b, &rng, DA_SPLIT_TRAIN, rs_bank_first(b, RS_ROWS_VAL));
    da_rng_seed(&rng, st->seed ^ HELDOUT_SEED_XOR);
    if (s == DA_OK) s = draw_val_group(b, &rng, DA_SPLIT_HELDOUT, rs_bank_first(b, RS_ROWS_HELDOUT));
    if (s != DA_OK) rs_bank_free(b);
    return s;
}

/* ------------------------------------------------------------------------ */
/* The bank: trajectories                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* what decides the x̂0 of a trajectory beyond the settings: the text
 * encoder, the UNet and the noise schedule (the VAE only decodes) */
uint64_t rs_models_hash(const da_pipeline *p)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(h, p->text->params.data, p->text->params.total * sizeof(float));
    h = fnv1a(h, p->unet->params.data, p->unet->params.total * sizeof(float));
    h = fnv1a(h, p->sched.alphas_cumprod, (size_t)p->sched.n_train * sizeof(float));
    int pred = (int)p->noise.prediction;
    return fnv1a(h, &pred, sizeof pred);
}

typedef struct bank_cb {
    rs_bank *b;
    int i0;                  /* the chunk's first row */
} bank_cb;

/* the pipeline's step callback: keep this step's x̂0 of every image */
static int keep_x0(da_step_info *info, void *user)
{
    bank_cb *c = user;
    rs_bank *b = c->b;
    for (int i = 0; i < info->batch; i++)
        memcpy(b->x0 + ((size_t)(c->i0 + i) * b->steps + info->step) * b->latent_n,
               info->x0 + (size_t)i * b->latent_n, (size_t)b->latent_n * sizeof(float));
    b->timesteps[info->step] = info->timestep;
    return 0;
}

da_status rs_bank_trajectories(rs_bank *b, da_pipeline *p, const rs_bank_settings *st, int progress)
{
    b->C = p->vae->cfg.latent_channels;
    b->H = p->latent_h;
    b->W = p->latent_w;
    b->latent_n = b->C * b->H * b->W;
    free(b->x0);
    free(b->timesteps);
    b->x0 = malloc((size_t)b->n * b->steps * b->latent_n * sizeof(float));
    b->timesteps = malloc((size_t)b->steps * sizeof(float));
    uint64_t *seeds = malloc((size_t)b->n * sizeof *seeds);
    if (!b->x0 || !b->timesteps || !seeds) {
        free(seeds);
        return da_fail(DA_ERR_NOMEM, "bank: out of memory for %d trajectories of %d steps", b->n, b->steps);
    }
    /* one noise seed per query, drawn in row order */
    da_rng rng;
    da_rng_seed(&rng, st->seed ^ NOISE_SEED_XOR);
    for (int i = 0; i < b->n; i++) seeds[i] = da_rng_u64(&rng);
    const char *prompts[BANK_CHUNK];
    double t0 = da_now_s();
    da_status s = DA_OK;
    for (int i0 = 0; i0 < b->n && s == DA_OK; i0 += BANK_CHUNK) {
        int n = b->n - i0 < BANK_CHUNK ? b->n - i0 : BANK_CHUNK;
        for (int i = 0; i < n; i++) prompts[i] = b->text[i0 + i];
        bank_cb cb = {b, i0};
        s = da_pipeline_generate(p, &st->sample, prompts, NULL, seeds + i0, n, keep_x0, &cb, NULL, NULL);
        if (s == DA_OK && p->steps_done != b->steps)
            s = da_fail(DA_ERR_INVALID, "bank: the sampler ran %d of %d steps", p->steps_done, b->steps);
        if (s == DA_OK && progress && ((i0 / BANK_CHUNK) % 8 == 7 || i0 + n == b->n))
            da_log(DA_LOG_INFO, "bank: %d / %d trajectories (%.0f s)", i0 + n, b->n, da_now_s() - t0);
    }
    free(seeds);
    return s;
}

/* ------------------------------------------------------------------------ */
/* The bank: its file                                                       */
/* ------------------------------------------------------------------------ */

enum { N_BANK_META = 12, META_TEXT = 64 };

typedef struct bank_meta {
    da_st_meta m[N_BANK_META];
    char v[N_BANK_META][META_TEXT];
} bank_meta;

/* the settings as metadata; equal text means equal settings */
static void settings_meta(bank_meta *bm, const rs_bank_settings *st)
{
    static const char *const keys[N_BANK_META] = {"format", "n_train", "n_val", "steps", "sampler", "cfg",
                                                  "eta", "seed", "unet", "models_hash", "max_tokens",
                                                  "query_split"};
    snprintf(bm->v[0], META_TEXT, "%s", RS_BANK_FORMAT);
    snprintf(bm->v[1], META_TEXT, "%d", st->n_train);
    snprintf(bm->v[2], META_TEXT, "%d", st->n_val);
    snprintf(bm->v[3], META_TEXT, "%d", st->sample.steps);
    snprintf(bm->v[4], META_TEXT, "%s", da_sampler_name(st->sample.sampler));
    snprintf(bm->v[5], META_TEXT, "%.9g", (double)st->sample.cfg);
    snprintf(bm->v[6], META_TEXT, "%.9g", (double)st->sample.eta);
    snprintf(bm->v[7], META_TEXT, "%llu", (unsigned long long)st->seed);
    snprintf(bm->v[8], META_TEXT, "%s", st->unet ? st->unet : "");
    snprintf(bm->v[9], META_TEXT, "%016llx", (unsigned long long)st->models_hash);
    snprintf(bm->v[10], META_TEXT, "%d", M);
    snprintf(bm->v[11], META_TEXT, "%s", st->all_splits ? "all" : "train");
    for (int i = 0; i < N_BANK_META; i++) bm->m[i] = (da_st_meta){(char *)keys[i], bm->v[i]};
}

da_status rs_bank_save(const rs_bank *b, const rs_bank_settings *st, const char *path)
{
    float *ids = malloc((size_t)b->n * M * sizeof(float));
    if (!ids) return da_fail(DA_ERR_NOMEM, "bank: out of memory");
    for (size_t k = 0; k < (size_t)b->n * M; k++) ids[k] = (float)b->query_ids[k];
    da_st_entry e[3] = {
        {"x0", b->x0, 5, {b->n, b->steps, b->C, b->H, b->W}},
        {"timesteps", b->timesteps, 1, {b->steps}},
        {"query_ids", ids, 2, {b->n, M}},
    };
    bank_meta bm;
    settings_meta(&bm, st);
    da_status s = da_st_write(path, e, 3, bm.m, N_BANK_META);
    free(ids);
    return s;
}

/* the first setting that differs, or 0 */
static int settings_differ(const da_safetensors *f, const rs_bank_settings *st, const char *path, char *why,
                           size_t cap)
{
    bank_meta bm;
    settings_meta(&bm, st);
    for (int i = 1; i < N_BANK_META; i++) {
        const char *have = da_st_meta_get(f, bm.m[i].key);
        if (!have || strcmp(have, bm.m[i].value)) {
            snprintf(why, cap, "%s was built with %s = %s, this run needs %s", path, bm.m[i].key,
                     have ? have : "(none)", bm.m[i].value);
            return 1;
        }
    }
    return 0;
}

/* the file's query ids equal b's (a shapes world of another version draws other queries) */
static int same_queries(const float *ids, const rs_bank *b)
{
    for (size_t k = 0; k < (size_t)b->n * M; k++)
        if (ids[k] != (float)b->query_ids[k]) return 0;
    return 1;
}

static da_status read_tensors(rs_bank *b, const da_safetensors *f, float **x0, float **ts, float **ids)
{
    const da_st_tensor *t = da_st_find(f, "x0");
    if (!t || t->ndim != 5 || t->shape[0] != b->n || t->shape[1] != b->steps || t->shape[2] < 1 ||
        t->shape[3] < 1 || t->shape[4] < 1 || t->shape[2] * t->shape[3] * t->shape[4] > 1000000)
        return da_fail(DA_ERR_FORMAT, "tensor x0 is missing or not (%d, %d, C, H, W)", b->n, b->steps);
    b->C = (int)t->shape[2], b->H = (int)t->shape[3], b->W = (int)t->shape[4];
    b->latent_n = b->C * b->H * b->W;
    *x0 = malloc((size_t)b->n * b->steps * b->latent_n * sizeof(float));
    *ts = malloc((size_t)b->steps * sizeof(float));
    *ids = malloc((size_t)b->n * M * sizeof(float));
    if (!*x0 || !*ts || !*ids) return da_fail(DA_ERR_NOMEM, "bank: out of memory");
    int sx[5] = {b->n, b->steps, b->C, b->H, b->W}, st[1] = {b->steps}, si[2] = {b->n, M};
    da_status s = da_st_read(f, "x0", *x0, 5, sx);
    if (s == DA_OK) s = da_st_read(f, "timesteps", *ts, 1, st);
    if (s == DA_OK) s = da_st_read(f, "query_ids", *ids, 2, si);
    return s;
}

da_status rs_bank_load(rs_bank *b, const rs_bank_settings *st, const char *path, int *match, char *why,
                       size_t why_cap)
{
    *match = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(why, why_cap, "%s does not exist", path);
        return DA_OK;
    }
    da_safetensors *f = NULL;
    da_status s = da_st_open(path, &f);
    if (s != DA_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", da_last_error());
        return da_fail(s, "observation bank %s: %s (remove it or pass another --bank)", path, msg);
    }
    const char *fmt = da_st_meta_get(f, "format");
    if (!fmt || strcmp(fmt, RS_BANK_FORMAT)) {
        da_st_close(f);
        return da_fail(DA_ERR_FORMAT, "%s is not an observation bank (metadata format '%s', want '%s'): "
                                      "remove it or pass another --bank", path, fmt ? fmt : "(none)", RS_BANK_FORMAT);
    }
    if (settings_differ(f, st, path, why, why_cap)) {
        da_st_close(f);
        return DA_OK;
    }
    rs_bank tmp = *b;
    float *x0 = NULL, *ts = NULL, *ids = NULL;
    s = read_tensors(&tmp, f, &x0, &ts, &ids);
    da_st_close(f);
    if (s == DA_OK && !same_queries(ids, b)) {
        snprintf(why, why_cap, "%s holds other queries for the same settings (made by another version "
                               "of the shapes world?)", path);
    } else if (s == DA_OK) {
        *b = tmp;
        free(b->x0);
        free(b->timesteps);
        b->x0 = x0, b->timesteps = ts;
        x0 = ts = NULL;
        *match = 1;
    } else {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", da_last_error());
        s = da_fail(s, "observation bank %s: %s (remove it or pass another --bank)", path, msg);
    }
    free(x0);
    free(ts);
    free(ids);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Examples                                                                 */
/* ------------------------------------------------------------------------ */

da_status rs_batch_alloc(rs_batch *x, int B, int latent_n)
{
    memset(x, 0, sizeof *x);
    x->B = B;
    x->latent_n = latent_n;
    size_t n = (size_t)B * M;
    x->x0 = malloc((size_t)B * latent_n * sizeof(float));
    x->timesteps = malloc((size_t)B * sizeof(float));
    x->query_ids = malloc(n * sizeof(int));
    x->prompt_ids = malloc(n * sizeof(int));
    x->target_ids = malloc(n * sizeof(int));
    x->out_ids = malloc(n * sizeof(int));
    x->next = malloc(n * sizeof(int));
    x->query_keep = malloc(n);
    x->prompt_keep = malloc(n);
    if (!x->x0 || !x->timesteps || !x->query_ids || !x->prompt_ids || !x->target_ids || !x->out_ids || !x->next ||
        !x->query_keep || !x->prompt_keep) {
        rs_batch_free(x);
        return da_fail(DA_ERR_NOMEM, "out of memory for a batch of %d", B);
    }
    return DA_OK;
}

void rs_batch_free(rs_batch *x)
{
    if (!x) return;
    free(x->x0); free(x->timesteps); free(x->query_ids); free(x->prompt_ids); free(x->target_ids);
    free(x->out_ids); free(x->next); free(x->query_keep); free(x->prompt_keep);
    memset(x, 0, sizeof *x);
}

/* a random phrasing of spec, tokenized */
static da_status paraphrase_tokens(da_rng *rng, const da_scene *spec, int *ids, uint8_t *keep)
{
    char text[DA_CAPTION_MAX];
    da_status s = da_world_paraphrase(rng, spec, text, sizeof text);
    return s == DA_OK ? da_prompt_tokens(text, ids, keep) : s;
}

/* a fresh caption (the train split, or either with all_splits) whose
 * meaning no validation query of either split and no evaluation prompt has */
static da_status fresh_query(da_rng *rng, const rs_bank *b, int all_splits, int *ids, uint8_t *keep, da_scene *spec)
{
    char text[DA_CAPTION_MAX];
    const da_scene *val = b->specs + rs_bank_first(b, RS_ROWS_VAL);   /* both groups, contiguous */
    for (int tries = 0; tries < MAX_TRIES; tries++) {
        da_status s = dq_draw(rng, dq_split(rng, all_splits), &b->excluded, text, spec);
        if (s != DA_OK) return s;
        if (!meaning_among(spec, val, 2 * b->n_val)) return da_prompt_tokens(text, ids, keep);
    }
    return da_fail(DA_ERR_RANGE, "no fresh query outside the validation queries in %d draws", MAX_TRIES);
}

/* Example r. Draws, in this order: the blind coin; the query (a fresh
 * caption: its split coin with all_splits, then the caption; or a training
 * row of the bank); the step; the prompt coin; the prompt's paraphrase (when
 * not the query); the target's paraphrase. */
static da_status draw_example(rs_batch *x, int r, const rs_bank *b, const rs_draw_opts *o, da_rng *rng)
{
    float u;
    da_rand(rng, &u, 1);
    int blind = u < o->p_blind;
    int *q = x->query_ids + (size_t)r * M;
    uint8_t *qk = x->query_keep + (size_t)r * M;
    da_scene fresh;
    const da_scene *spec = &fresh;
    int64_t row = 0, step;
    da_status s = DA_OK;
    if (blind && o->fresh_blind) {
        s = fresh_query(rng, b, o->all_splits, q, qk, &fresh);
    } else {
        s = da_randint(rng, &row, 1, 0, b->n_train);
        memcpy(q, b->query_ids + row * M, M * sizeof(int));
        memcpy(qk, b->query_keep + row * M, M);
        spec = &b->specs[row];
    }
    if (s == DA_OK) s = da_randint(rng, &step, 1, 0, b->steps);
    if (s != DA_OK) return s;
    /* the observation: x̂0 of that step, or nothing (apriori, once) with the step's timestep */
    float *obs = x->x0 + (size_t)r * x->latent_n;
    if (blind) memset(obs, 0, (size_t)x->latent_n * sizeof(float));
    else memcpy(obs, b->x0 + ((size_t)row * b->steps + step) * b->latent_n, (size_t)b->latent_n * sizeof(float));
    x->timesteps[r] = b->timesteps[step];
    x->n_blind += blind;
    da_rand(rng, &u, 1);
    int *p = x->prompt_ids + (size_t)r * M;
    uint8_t *pk = x->prompt_keep + (size_t)r * M;
    if (u < o->p_query_prompt) {
        memcpy(p, q, M * sizeof(int));
        memcpy(pk, qk, M);
    } else {
        s = paraphrase_tokens(rng, spec, p, pk);
    }
    uint8_t tk[M];
    if (s == DA_OK) s = paraphrase_tokens(rng, spec, x->target_ids + (size_t)r * M, tk);
    return s;
}

static int target_len(const int *ids)
{
    int n = 0;
    while (n < M && ids[n] != DA_TOK_PAD) n++;
    return n;
}

void rs_batch_targets(rs_batch *x)
{
    int T = 1;
    for (int r = 0; r < x->B; r++) {
        int L = target_len(x->target_ids + (size_t)r * M);
        if (L - 1 > T) T = L - 1;
    }
    x->T_out = T;
    for (int r = 0; r < x->B; r++) {
        const int *y = x->target_ids + (size_t)r * M;
        int L = target_len(y);
        for (int j = 0; j < T; j++) {
            x->out_ids[(size_t)r * T + j] = y[j];   /* BOS .. ; PAD past EOS (never read: causal) */
            x->next[(size_t)r * T + j] = j + 1 < L ? y[j + 1] : -1;
        }
    }
}

da_status rs_draw_batch(rs_batch *x, const rs_bank *b, const rs_draw_opts *o, da_rng *rng)
{
    x->n_blind = 0;
    for (int r = 0; r < x->B; r++) {
        da_status s = draw_example(x, r, b, o, rng);
        if (s != DA_OK) return s;
    }
    rs_batch_targets(x);
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* The loss                                                                 */
/* ------------------------------------------------------------------------ */

int rs_allowed_id(int v) { return v != DA_TOK_PAD && v != DA_TOK_BOS && v != DA_TOK_UNK; }

/* share of predicted tokens whose argmax over the allowed ids (ties to the
 * lower id, as greedy generation) is the target */
static double token_accuracy(const float *logits, const int *next, int rows, int V)
{
    int n = 0, right = 0;
    for (int i = 0; i < rows; i++) {
        if (next[i] < 0) continue;
        const float *l = logits + (size_t)i * V;
        int best = -1;
        for (int v = 0; v < V; v++)
            if (rs_allowed_id(v) && (best < 0 || l[v] > l[best])) best = v;
        n++;
        right += best == next[i];
    }
    return n ? (double)right / n : 0.0;
}

da_tensor *rs_loss(da_tape *t, const da_refiner *m, const rs_batch *x, double *tok_acc)
{
    const int B = x->B, T = x->T_out, V = m->cfg.vocab_size;
    da_tensor *logits = da_refiner_forward(t, m, x->x0, x->timesteps, x->query_ids, x->query_keep, x->prompt_ids,
                                           x->prompt_keep, x->out_ids, B, T);
    if (!logits) return NULL;
    /* The restricted cross-entropy: generation writes from A = every id but
     * PAD, BOS and UNK, so the log-probs it samples from are
     *     log p(v | y_<=j, obs) = l_v - log sum_{u in A} exp(l_u),  v in A,
     * and the loss is their mean over the N predicted tokens of the batch
     * (each target's words and its EOS; BOS is given, PAD past EOS skipped):
     *     L = -(1/N) sum_b sum_{j < len_b - 1} log p(y_{b,j+1} | y_{b,<=j}, obs_b).
     * A bias of -1e9 on the columns outside A makes exp() there exactly 0
     * in da_cross_entropy's log-sum-exp (and their gradient 0). */
    int rows[2] = {B * T, V}, vshape[1] = {V};
    da_tensor *flat = da_reshape(t, logits, 2, rows);
    da_tensor *bias = da_tensor_new(t, 1, vshape, 0);
    if (!flat || !bias) return NULL;
    for (int v = 0; v < V; v++) bias->data[v] = rs_allowed_id(v) ? 0.0f : EXCLUDED_LOGIT;
    da_tensor *restricted = da_add(t, flat, bias);
    if (tok_acc) *tok_acc = token_accuracy(restricted->data, x->next, B * T, V);
    return da_cross_entropy(t, restricted, x->next, -1);
}

/* ------------------------------------------------------------------------ */
/* Meaning rate                                                             */
/* ------------------------------------------------------------------------ */

int rs_judge(const int *ids, const da_scene *query, int *parsed)
{
    da_scene spec;
    *parsed = 0;
    if (da_parse_prompt_ids(ids, &spec) != DA_OK) return 0;
    *parsed = 1;
    return da_spec_same_meaning(&spec, query);
}

typedef struct val_buf {
    float *x0, *ts;
    int *prompt, *out;
    uint8_t *keep;
} val_buf;

static void val_buf_free(val_buf *v)
{
    free(v->x0); free(v->ts); free(v->prompt); free(v->out); free(v->keep);
}

/* judge the n outputs against the group's queries; keep them in outs column c */
static void judge_all(const val_buf *v, const rs_bank *b, int first, int n, rs_meaning *acc, int *outs, int cols,
                      int c)
{
    for (int i = 0; i < n; i++) {
        int parsed, meant = rs_judge(v->out + (size_t)i * M, &b->specs[first + i], &parsed);
        acc->n++;
        acc->parsed += parsed;
        acc->meant += meant;
        if (outs) memcpy(outs + ((size_t)i * cols + c) * M, v->out + (size_t)i * M, M * sizeof(int));
    }
}

/* the prompt in use becomes the written one */
static void chain(val_buf *v, int n)
{
    memcpy(v->prompt, v->out, (size_t)n * M * sizeof(int));
    for (size_t k = 0; k < (size_t)n * M; k++) v->keep[k] = v->out[k] != DA_TOK_PAD;
}

da_status rs_meaning_rate(const da_refiner *m, const rs_bank *b, int group, int n, int K, float temperature,
                          uint64_t seed, rs_meaning *loop, rs_meaning *blind, int *outs)
{
    memset(loop, 0, sizeof *loop);
    memset(blind, 0, sizeof *blind);
    if (group == RS_ROWS_TRAIN || n < 1 || n > b->n_val || K < 1 || K > b->steps)
        return da_fail(DA_ERR_INVALID, "meaning rate: %d queries, %d refinements (bank: %d per split, %d steps)", n,
                       K, b->n_val, b->steps);
    int first = rs_bank_first(b, group), L = b->latent_n;
    const int *qids = b->query_ids + (size_t)first * M;
    const uint8_t *qkeep = b->query_keep + (size_t)first * M;
    val_buf v = {malloc((size_t)n * L * sizeof(float)), malloc((size_t)n * sizeof(float)),
                 malloc((size_t)n * M * sizeof(int)), malloc((size_t)n * M * sizeof(int)), malloc((size_t)n * M)};
    if (!v.x0 || !v.ts || !v.prompt || !v.out || !v.keep) {
        val_buf_free(&v);
        return da_fail(DA_ERR_NOMEM, "meaning rate: out of memory");
    }
    da_rng rng;
    da_rng_seed(&rng, seed);
    memcpy(v.prompt, qids, (size_t)n * M * sizeof(int));
    memcpy(v.keep, qkeep, (size_t)n * M);
    da_status s = DA_OK;
    /* loop: refinement k after step floor(k * steps / K), as da_loop_refine_step */
    for (int k = 0; k < K && s == DA_OK; k++) {
        int step = (int)((long)k * b->steps / K);
        for (int i = 0; i < n; i++) {
            memcpy(v.x0 + (size_t)i * L, b->x0 + ((size_t)(first + i) * b->steps + step) * L, (size_t)L * sizeof(float));
            v.ts[i] = b->timesteps[step];
        }
        s = da_refiner_generate(m, v.x0, v.ts, qids, qkeep, v.prompt, v.keep, n, temperature, &rng, v.out, NULL);
        if (s == DA_OK) judge_all(&v, b, first, n, loop, outs, K + 1, k);
        chain(&v, n);
    }
    /* blind (once): a zero latent at step 0's timestep, the query in use */
    memset(v.x0, 0, (size_t)n * L * sizeof(float));
    for (int i = 0; i < n; i++) v.ts[i] = b->timesteps[0];
    if (s == DA_OK)
        s = da_refiner_generate(m, v.x0, v.ts, qids, qkeep, qids, qkeep, n, temperature, &rng, v.out, NULL);
    if (s == DA_OK) judge_all(&v, b, first, n, blind, outs, K + 1, K);
    val_buf_free(&v);
    return s;
}

static double share(int a, int n) { return n ? (double)a / n : 0.0; }

/* one split at one temperature, as the public struct */
static da_status meaning_of(const da_refiner *m, const rs_bank *b, int group, int n, int K, float temp,
                            da_refiner_meaning *out, int *outs)
{
    uint64_t seed = WRITER_SEED ^ ((uint64_t)group << 8) ^ (temp > 0.0f);
    rs_meaning lp, bl;
    da_status s = rs_meaning_rate(m, b, group, n, K, temp, seed, &lp, &bl, outs);
    if (s != DA_OK) return s;
    int total = lp.n + bl.n;
    *out = (da_refiner_meaning){.n = total, .parse = (float)share(lp.parsed + bl.parsed, total),
                                .meaning = (float)share(lp.meant + bl.meant, total),
                                .loop = (float)share(lp.meant, lp.n), .blind = (float)share(bl.meant, bl.n)};
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct rs_job {
    da_refiner_sup_opts o;
    rs_draw_opts draw;
    rs_bank bank;
    da_refiner *m;
    rs_batch batch;
} rs_job;

/* the weights that are saved: the EMA when kept */
static float *use_saved_weights(rs_job *j, const da_trainer *tr)
{
    float *live = j->m->params.data;
    if (tr->ema) j->m->params.data = tr->ema;
    return live;
}

/* The quick validation of the weights entering this step (after tr->step
 * updates), on the line of the step about to run: val_every is a multiple of
 * log_every, so that line is written. */
static da_status quick_validation(rs_job *j, da_trainer *tr)
{
    static const char *const names[2][2] = {{"val_t1", "val_t0"}, {"heldout_t1", "heldout_t0"}};
    int n = j->o.val_quick < j->bank.n_val ? j->o.val_quick : j->bank.n_val;
    float *live = use_saved_weights(j, tr);
    da_status s = DA_OK;
    for (int g = 0; g < 2 && s == DA_OK; g++)
        for (int k = 0; k < 2 && s == DA_OK; k++) {
            da_refiner_meaning r;
            s = meaning_of(j->m, &j->bank, g ? RS_ROWS_HELDOUT : RS_ROWS_VAL, n, j->o.n_refine, k ? 0.0f : 1.0f, &r,
                           NULL);
            if (s == DA_OK) da_trainer_metric(tr, names[g][k], r.meaning);
        }
    j->m->params.data = live;
    return s;
}

static da_status rs_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    (void)micro;
    rs_job *j = user;
    long next = tr->step + 1;
    if (j->o.val_every > 0 && j->bank.n_val > 0 && next % j->o.val_every == 0) {
        da_status s = quick_validation(j, tr);
        if (s != DA_OK) return s;
    }
    da_status s = rs_draw_batch(&j->batch, &j->bank, &j->draw, &tr->data_rng);
    if (s != DA_OK) return s;
    double acc;
    da_tensor *l = rs_loss(t, j->m, &j->batch, &acc);
    if (!l) return DA_ERR_INVALID;
    da_tape_backward(t, l);
    *loss = l->data[0];
    da_trainer_metric(tr, "tok_acc", acc);
    da_trainer_metric(tr, "t_out", j->batch.T_out);
    return DA_OK;
}

/* the cached bank, or a new one (saved) when the file is missing or stale */
static da_status bank_prepare(rs_job *j, const da_trainer_config *tc, const char *dir, const char *path,
                              da_refiner_sup_result *r)
{
    da_pipeline *p = NULL;
    da_status s = da_weights_load_pipeline(&p, dir, j->o.unet);
    if (s != DA_OK) return s;
    rs_bank_settings st = {.n_train = j->o.bank_size, .n_val = j->o.val_queries, .sample = j->o.sample,
                           .seed = j->o.bank_seed, .unet = j->o.unet, .models_hash = rs_models_hash(p),
                           .all_splits = j->o.query_split_all};
    int match = 0;
    char why[1024] = "";
    s = rs_bank_queries(&j->bank, &st);
    if (s == DA_OK) s = rs_bank_load(&j->bank, &st, path, &match, why, sizeof why);
    if (s == DA_OK && match && tc->progress) da_log(DA_LOG_INFO, "%s: observation bank from %s", tc->name, path);
    if (s == DA_OK && !match) {
        if (tc->progress)
            da_log(DA_LOG_INFO, "%s: building the observation bank (%s): %d queries x %d steps -> %s", tc->name, why,
                    j->bank.n, st.sample.steps, path);
        double t0 = da_now_s();
        s = rs_bank_trajectories(&j->bank, p, &st, tc->progress);
        if (s == DA_OK) s = rs_bank_save(&j->bank, &st, path);
        r->bank_s = da_now_s() - t0;
    }
    r->bank_cached = match;
    da_pipeline_free(p);
    return s;
}

static da_status job_init(rs_job *j, const da_trainer_config *tc, const da_refiner_sup_opts *o, const char *dir,
                          const char *bank_path, da_refiner_sup_result *r)
{
    memset(j, 0, sizeof *j);
    j->o = *o;
    j->draw = (rs_draw_opts){.p_blind = o->p_blind, .p_query_prompt = o->p_query_prompt,
                             .fresh_blind = o->fresh_blind, .all_splits = o->query_split_all};
    da_status s = bank_prepare(j, tc, dir, bank_path, r);
    if (s != DA_OK) return s;
    const da_refiner_config *c = &o->model;
    if (c->latent_channels != j->bank.C || c->latent_size != j->bank.H || c->latent_size != j->bank.W)
        return da_fail(DA_ERR_INVALID, "the refiner reads %dx%dx%d latents, the base models make %dx%dx%d",
                       c->latent_channels, c->latent_size, c->latent_size, j->bank.C, j->bank.H, j->bank.W);
    if (!(j->m = da_refiner_create(c, 1))) return DA_ERR_INVALID;
    /* a resumed run overwrites these with the checkpoint's weights */
    da_rng rng;
    da_rng_seed(&rng, tc->seed);
    da_refiner_init(j->m, &rng);
    return rs_batch_alloc(&j->batch, tc->batch, j->bank.latent_n);
}

static void job_free(rs_job *j)
{
    rs_bank_free(&j->bank);
    da_refiner_free(j->m);
    rs_batch_free(&j->batch);
}

/* ---- outputs ---------------------------------------------------------------- */

#define N_EXAMPLES 4   /* example queries per split in the report */

typedef struct report_doc {
    const rs_job *j;
    const da_trainer *tr;
    const da_trainer_config *tc;
    const da_refiner_sup_result *r;
    const int *outs[2];      /* (val_queries, K + 1, M) per split, temperature 1 */
} report_doc;

static void put_meaning(FILE *f, const char *key, const da_refiner_meaning *m, int last)
{
    fprintf(f, "    \"%s\": {\"outputs\": %d, \"parse\": %.6f, \"meaning\": %.6f, \"loop\": %.6f, \"blind\": %.6f}%s\n",
            key, m->n, (double)m->parse, (double)m->meaning, (double)m->loop, (double)m->blind, last ? "" : ",");
}

static void put_examples(FILE *f, const report_doc *d, int g)
{
    const rs_bank *b = &d->j->bank;
    int K = d->j->o.n_refine, n = b->n_val < N_EXAMPLES ? b->n_val : N_EXAMPLES;
    int first = rs_bank_first(b, g ? RS_ROWS_HELDOUT : RS_ROWS_VAL);
    fprintf(f, "    \"%s\": [\n", g ? "heldout" : "train");
    for (int i = 0; i < n; i++) {
        fprintf(f, "      {\"query\": ");
        da_json_write_str(f, b->text[first + i]);
        fprintf(f, ", \"written\": [");
        for (int k = 0; k <= K; k++) {
            char text[512];
            if (da_detokenize(d->outs[g] + ((size_t)i * (K + 1) + k) * M, M, text, sizeof text) != DA_OK) text[0] = 0;
            if (k) fprintf(f, ", ");
            da_json_write_str(f, text);
        }
        fprintf(f, "]}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "    ]%s\n", g ? "" : ",");
}

static void write_report(FILE *f, const void *ctx)
{
    const report_doc *d = ctx;
    const da_refiner_sup_opts *o = &d->j->o;
    const da_refiner_sup_result *r = d->r;
    fprintf(f, "{\n  \"format\": \"dalign-refiner-report-1\",\n  \"name\": \"%s\",\n", o->name);
    fprintf(f, "  \"steps\": %ld,\n  \"batch\": %d,\n  \"lr\": %.9g,\n  \"seed\": %llu,\n  \"loss\": %.6f,\n",
            d->tr->step, d->tc->batch, (double)d->tc->lr, (unsigned long long)d->tc->seed, (double)d->tr->loss);
    fprintf(f, "  \"train_time_s\": %.1f,\n  \"weights\": \"%s\",\n", d->tr->elapsed_s, d->tr->ema ? "ema" : "trained");
    fprintf(f, "  \"bank\": {\"queries\": %d, \"val_queries\": %d, \"steps\": %d, \"cfg\": %.9g, \"seed\": %llu, "
               "\"unet\": ",
            o->bank_size, o->val_queries, o->sample.steps, (double)o->sample.cfg, (unsigned long long)o->bank_seed);
    da_json_write_str(f, o->unet);
    fprintf(f, "},\n");
    fprintf(f, "  \"p_blind\": %.9g,\n  \"p_query_prompt\": %.9g,\n  \"fresh_blind\": %d,\n", (double)o->p_blind,
            (double)o->p_query_prompt, o->fresh_blind);
    fprintf(f, "  \"query_split\": \"%s\",\n", o->query_split_all ? "all" : "train");
    fprintf(f, "  \"refinements\": %d,\n  \"meaning_rate\": {\n", o->n_refine);
    put_meaning(f, "train_t1", &r->train_t1, 0);
    put_meaning(f, "train_t0", &r->train_t0, 0);
    put_meaning(f, "heldout_t1", &r->heldout_t1, 0);
    put_meaning(f, "heldout_t0", &r->heldout_t0, 1);
    fprintf(f, "  },\n  \"examples_t1\": {\n");
    put_examples(f, d, 0);
    put_examples(f, d, 1);
    fprintf(f, "  }\n}\n");
}

/* the final meaning rates on every validation query -> r and OUT/NAME.report.json */
static da_status final_validation(rs_job *j, const da_trainer *tr, const da_trainer_config *tc, const char *out_dir,
                                  da_refiner_sup_result *r)
{
    int n = j->bank.n_val, K = j->o.n_refine;
    int *outs[2] = {malloc((size_t)n * (K + 1) * M * sizeof(int)), malloc((size_t)n * (K + 1) * M * sizeof(int))};
    da_status s = outs[0] && outs[1] ? DA_OK : da_fail(DA_ERR_NOMEM, "validation: out of memory");
    float *live = use_saved_weights(j, tr);
    if (s == DA_OK) s = meaning_of(j->m, &j->bank, RS_ROWS_VAL, n, K, 1.0f, &r->train_t1, outs[0]);
    if (s == DA_OK) s = meaning_of(j->m, &j->bank, RS_ROWS_VAL, n, K, 0.0f, &r->train_t0, NULL);
    if (s == DA_OK) s = meaning_of(j->m, &j->bank, RS_ROWS_HELDOUT, n, K, 1.0f, &r->heldout_t1, outs[1]);
    if (s == DA_OK) s = meaning_of(j->m, &j->bank, RS_ROWS_HELDOUT, n, K, 0.0f, &r->heldout_t0, NULL);
    j->m->params.data = live;
    r->val_queries = n;
    char name[DP_PATH_MAX];
    if (s == DA_OK && snprintf(name, sizeof name, "%s.report.json", j->o.name) >= (int)sizeof name)
        s = da_fail(DA_ERR_RANGE, "name too long: %s", j->o.name);
    report_doc doc = {j, tr, tc, r, {outs[0], outs[1]}};
    if (s == DA_OK) s = da_write_with(out_dir, name, write_report, &doc);
    r->validated = s == DA_OK;
    free(outs[0]);
    free(outs[1]);
    return s;
}

static da_status save_outputs(const rs_job *j, const da_trainer *tr, const da_trainer_config *tc, const char *out_dir)
{
    char steps[32], seed[32], bank[32], blind[32];
    snprintf(steps, sizeof steps, "%ld", tr->step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)tc->seed);
    snprintf(bank, sizeof bank, "%d", j->o.bank_size);
    snprintf(blind, sizeof blind, "%.9g", (double)j->o.p_blind);
    da_st_meta meta[] = {
        {"format", "dalign-refiner"},
        {"trained_by", "refiner-sup"},
        {"weights", tr->ema ? "ema" : "trained"},
        {"unet", (char *)j->o.unet},
        {"steps", steps},
        {"seed", seed},
        {"bank_size", bank},
        {"p_blind", blind},
        {"query_split", j->o.query_split_all ? "all" : "train"},
    };
    /* staged, then renamed into place config last, all or none (dp_ship):
     * a rerun with --force never leaves new weights beside an old config */
    dp_ship sh;
    dp_ship_init(&sh);
    const char *staged;
    da_status s = dp_ship_add(&sh, out_dir, j->o.name, ".safetensors", &staged);
    if (s == DA_OK) s = da_trainer_save_weights(tr, staged, 1, meta, (int)(sizeof meta / sizeof meta[0]));
    if (s == DA_OK) s = dp_ship_add(&sh, out_dir, j->o.name, ".json", &staged);
    if (s == DA_OK) s = da_refiner_config_save(&j->m->cfg, staged);
    if (s == DA_OK) s = dp_ship_commit(&sh);
    else dp_ship_abort(&sh);
    return s;
}

da_status da_refiner_sup_run(const da_trainer_config *tc, const da_refiner_sup_opts *o, da_refiner_sup_result *res)
{
    da_refiner_sup_result r;
    memset(&r, 0, sizeof r);
    r.exit_code = 1;
    const char *dir = da_weights_dir(o->weights_dir);
    const char *out_dir = o->out_dir ? o->out_dir : dir;
    char bank_path[DP_PATH_MAX];
    da_status s = da_refiner_sup_check(tc, o);
    if (s == DA_OK && !o->resume) s = dp_check_new_outputs(out_dir, o->name, o->force);
    if (s == DA_OK && o->bank_path && snprintf(bank_path, sizeof bank_path, "%s", o->bank_path) >= DP_PATH_MAX)
        s = da_fail(DA_ERR_RANGE, "--bank path too long");
    else if (s == DA_OK && !o->bank_path)
        s = dp_path(bank_path, out_dir, o->name, ".bank.safetensors");
    if (s == DA_OK) s = da_make_dirs(out_dir);
    rs_job j;
    memset(&j, 0, sizeof j);
    da_trainer *tr = NULL;
    if (s == DA_OK) s = job_init(&j, tc, o, dir, bank_path, &r);
    if (s == DA_OK && tc->progress)
        da_log(DA_LOG_INFO, "%s: %zu parameters, %d training queries, p_blind %g, batch %d, %ld steps", tc->name,
                j.m->params.total, o->bank_size, (double)o->p_blind, tc->batch, tc->total_steps);
    da_pretrain_opts po = {.out_dir = out_dir, .resume = o->resume};
    da_pretrain_result pr = {.exit_code = 1};
    if (s == DA_OK) s = dp_train(tc, &po, &j.m->params, rs_step, &j, &tr, &pr);
    int done = s == DA_OK && !tr->stop_signal && tr->step >= tc->total_steps;
    if (done) s = save_outputs(&j, tr, tc, out_dir);
    if (done && s == DA_OK && o->val_queries > 0) {
        s = final_validation(&j, tr, tc, out_dir, &r);
        if (s == DA_OK && tc->progress)
            da_log(DA_LOG_INFO, "%s: meaning rate on %d held-back queries x %d outputs: train split %.3f (T=1) %.3f (T=0), "
                            "held-out %.3f (T=1) %.3f (T=0)",
                    tc->name, r.val_queries, o->n_refine + 1, (double)r.train_t1.meaning, (double)r.train_t0.meaning,
                    (double)r.heldout_t1.meaning, (double)r.heldout_t0.meaning);
    }
    r.steps = pr.steps, r.loss = pr.loss, r.stop_signal = pr.stop_signal;
    r.exit_code = s == DA_OK ? pr.exit_code : 1;
    if (res) *res = r;
    da_trainer_free(tr);
    job_free(&j);
    return s;
}
