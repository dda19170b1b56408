/* Text -> latent -> image (docs/pipeline.md):
 *
 *   ids = tokenize(prompt); ctx = text_encoder(ids)       (B, 24, d)
 *   ctx_u = text_encoder(negative or DA_UNCOND_PROMPT)    (1, 24, d), repeated
 *   x = randn(seed_i) * init_sigma per image               (B, 4, 8, 8)
 *   kv = the UNet's cross-attention keys/values of [ctx_u; ctx_c], made once
 *        (again only for rows whose context a step callback swapped)
 *   for each step: eps = unet([x; x], t, [ctx_u; ctx_c], kv)  one call of 2B (w != 1)
 *                  eps = eps_u + w (eps_c - eps_u)
 *                  x, x0 = sampler step; callback (may stop or swap ctx_c)
 *   image = (vae_decode(x / scale_factor) + 1) / 2, clamped to [0, 1]
 *
 * Every model call runs on tapes with gradients off, reset before the call:
 * the context and the latents live in buffers of their own. A call's batch
 * is cut into one piece per thread (da_run_pieces), each piece on its own
 * tape with single-threaded kernels: one parallel region per model call,
 * and the same bits whatever the cut, because no image's bits depend on
 * its batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/pipeline.h"

#define TAPE_BLOCK (4u << 20)
#define MAX_IMAGES 65536

/* ---- options ---------------------------------------------------------------- */

static const char *const sampler_names[] = {"ddim", "ddpm", "euler"};

da_status da_sampler_parse(const char *name, da_sampler_kind *out)
{
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, sampler_names[i])) {
            *out = (da_sampler_kind)i;
            return DA_OK;
        }
    return da_fail(DA_ERR_INVALID, "unknown sampler '%s' (ddim, ddpm or euler)", name ? name : "(null)");
}

const char *da_sampler_name(da_sampler_kind kind)
{
    return (unsigned)kind < 3 ? sampler_names[kind] : "?";
}

da_sample_opts da_sample_opts_default(void)
{
    da_sample_opts o = {.sampler = DA_SAMPLER_DDIM, .steps = 20, .cfg = 3.0f, .eta = 0.0f};
    return o;
}

/* ---- prompts and noise -------------------------------------------------------- */

da_status da_prompt_tokens(const char *text, int *ids, uint8_t *keep)
{
    da_tok_report rep;
    da_status s = da_tokenize(text, ids, keep, &rep);
    if (s != DA_OK) return s;
    char shown[DA_EXCERPT_CAP];   /* a 100 KB prompt is not echoed whole */
    if (rep.n_unknown)
        return da_fail(DA_ERR_INVALID, "unknown word%s '%s' in prompt \"%s\" (docs/shapes-world.md lists the vocabulary)",
                       rep.n_unknown > 1 ? "s" : "", rep.unknown, da_excerpt(text, 80, shown, sizeof shown));
    if (rep.n_truncated)
        return da_fail(DA_ERR_INVALID, "prompt \"%s\" is too long: %d words past the limit of %d",
                       da_excerpt(text, 80, shown, sizeof shown), rep.n_truncated, DA_MAX_TOKENS - 2);
    return DA_OK;
}

void da_initial_latent(uint64_t seed, float *x, size_t n)
{
    da_rng r;
    da_rng_seed(&r, seed);
    da_randn(&r, x, n);
}

/* ---- create / free ------------------------------------------------------------- */

static da_status check_models(const da_text_encoder *text, const da_vae *vae, const da_unet *unet)
{
    if (!text || !vae || !unet) return da_fail(DA_ERR_INVALID, "pipeline: NULL model");
    const da_text_config *tc = &text->cfg;
    if (tc->context < DA_MAX_TOKENS)
        return da_fail(DA_ERR_INVALID, "pipeline: the text encoder's context (%d) is shorter than %d tokens",
                       tc->context, DA_MAX_TOKENS);
    if (tc->vocab_size < da_vocab_size())
        return da_fail(DA_ERR_INVALID, "pipeline: the text encoder's vocab_size (%d) is below the tokenizer's (%d)",
                       tc->vocab_size, da_vocab_size());
    if (unet->cfg.context_dim != tc->d_model)
        return da_fail(DA_ERR_INVALID, "pipeline: unet context_dim %d != text encoder d_model %d",
                       unet->cfg.context_dim, tc->d_model);
    int L = vae->cfg.latent_channels;
    if (unet->cfg.in_channels != L || unet->cfg.out_channels != L)
        return da_fail(DA_ERR_INVALID, "pipeline: unet channels in %d / out %d != vae latent_channels %d",
                       unet->cfg.in_channels, unet->cfg.out_channels, L);
    if (vae->cfg.in_channels != 3)
        return da_fail(DA_ERR_INVALID, "pipeline: the vae must make RGB images (in_channels %d)",
                       vae->cfg.in_channels);
    return DA_OK;
}

da_status da_pipeline_create(da_pipeline **out, da_text_encoder *text, da_vae *vae, da_unet *unet,
                             const da_noise_config *noise)
{
    *out = NULL;
    da_status s = check_models(text, vae, unet);
    if (s != DA_OK) return s;
    da_pipeline *p = calloc(1, sizeof *p);
    if (!p) return da_fail(DA_ERR_NOMEM, "out of memory");
    p->text = text;
    p->vae = vae;
    p->unet = unet;
    p->noise = noise ? *noise : da_noise_config_default();
    s = da_schedule_init(&p->sched, p->noise.beta_schedule, p->noise.n_train, p->noise.beta_start,
                         p->noise.beta_end);
    if (s != DA_OK) {
        free(p);
        return s;
    }
    da_tape_init(&p->tape, TAPE_BLOCK);
    da_tape_set_grad(&p->tape, 0);
    p->latent_h = p->latent_w = DA_IMG / 4;   /* the VAE downsamples by 4 */
    *out = p;
    return DA_OK;
}

void da_pipeline_free(da_pipeline *p)
{
    if (!p) return;
    if (p->owns_models) {
        da_text_encoder_free(p->text);
        da_vae_free(p->vae);
        da_unet_free(p->unet);
    }
    da_schedule_free(&p->sched);
    da_tape_free(&p->tape);
    for (int w = 0; w < p->n_worker_tapes; w++) da_tape_free(&p->worker_tapes[w]);
    free(p->worker_tapes);
    free(p);
}

/* Tape of piece w of a model call (0: the pipeline's own); tapes for
 * n_pieces pieces are made before the parallel region */
static da_tape *piece_tape(da_pipeline *p, int w) { return w ? &p->worker_tapes[w - 1] : &p->tape; }

static da_status ensure_tapes(da_pipeline *p, int n_pieces)
{
    int need = n_pieces - 1;
    if (need <= p->n_worker_tapes) return DA_OK;
    da_tape *t = realloc(p->worker_tapes, (size_t)need * sizeof *t);
    if (!t) return da_fail(DA_ERR_NOMEM, "pipeline: out of memory for %d tapes", need);
    p->worker_tapes = t;
    for (; p->n_worker_tapes < need; p->n_worker_tapes++) {
        da_tape_init(&t[p->n_worker_tapes], TAPE_BLOCK);
        da_tape_set_grad(&t[p->n_worker_tapes], 0);
    }
    return DA_OK;
}

/* ---- samplers behind one interface --------------------------------------------- */

typedef struct sampler {
    da_sampler_kind kind;
    float eta;
    da_ddim ddim;
    da_ddpm ddpm;
    da_euler euler;
} sampler;

static da_status sampler_init(sampler *s, const da_pipeline *p, const da_sample_opts *o)
{
    memset(s, 0, sizeof *s);
    s->kind = o->sampler;
    s->eta = o->eta;
    const da_noise_config *nc = &p->noise;
    if (o->sampler == DA_SAMPLER_DDIM) {
        da_ddim_config c = da_ddim_config_default();
        c.prediction = nc->prediction;
        c.spacing = nc->spacing;
        c.steps_offset = nc->steps_offset;
        c.clip_sample = nc->clip_sample;
        c.clip_sample_range = nc->clip_sample_range;
        c.set_alpha_to_one = nc->set_alpha_to_one;
        c.eta = o->eta;
        return da_ddim_init(&s->ddim, &p->sched, &c, o->steps);
    }
    if (o->sampler == DA_SAMPLER_DDPM) {
        da_ddpm_config c = da_ddpm_config_default();
        c.prediction = nc->prediction;
        c.spacing = nc->spacing;
        c.steps_offset = nc->steps_offset;
        c.clip_sample = nc->clip_sample;
        c.clip_sample_range = nc->clip_sample_range;
        return da_ddpm_init(&s->ddpm, &p->sched, &c, o->steps);
    }
    return da_euler_init(&s->euler, &p->sched, nc->prediction, o->steps);
}

static void sampler_free(sampler *s)
{
    if (s->kind == DA_SAMPLER_DDIM) da_ddim_free(&s->ddim);
    else if (s->kind == DA_SAMPLER_DDPM) da_ddpm_free(&s->ddpm);
    else da_euler_free(&s->euler);
}

static float sampler_timestep(const sampler *s, int i)
{
    if (s->kind == DA_SAMPLER_DDIM) return (float)s->ddim.timesteps[i];
    if (s->kind == DA_SAMPLER_DDPM) return (float)s->ddpm.timesteps[i];
    return s->euler.timesteps[i];
}

static float sampler_init_sigma(const sampler *s)
{
    return s->kind == DA_SAMPLER_EULER ? s->euler.init_noise_sigma : 1.0f;
}

/* the UNet's input for latent x (n values) at step i */
static void sampler_model_input(const sampler *s, float *out, const float *x, int i, size_t n)
{
    if (s->kind == DA_SAMPLER_EULER) da_euler_scale_model_input(&s->euler, out, x, i, n);
    else memcpy(out, x, n * sizeof *x);
}

/* One step for B images of n_per values. Noise is drawn per image from that
 * image's generator, so an image never depends on its batch neighbours. */
static da_status sampler_step(const sampler *s, int i, float *prev, float *x0, const float *eps,
                              const float *x, da_rng *rng, float *noise, int B, size_t n_per)
{
    size_t n = (size_t)B * n_per;
    if (s->kind == DA_SAMPLER_EULER) {
        da_euler_step(&s->euler, prev, x0, eps, i, x, n);
        return DA_OK;
    }
    if (s->kind == DA_SAMPLER_DDIM && s->eta == 0.0f)
        return da_ddim_step(&s->ddim, prev, x0, eps, s->ddim.timesteps[i], x, NULL, n);
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * n_per;
        da_status st = s->kind == DA_SAMPLER_DDIM
                           ? da_ddim_step_rng(&s->ddim, prev + o, x0 + o, eps + o, s->ddim.timesteps[i], x + o,
                                              &rng[b], noise, n_per)
                           : da_ddpm_step_rng(&s->ddpm, prev + o, x0 + o, eps + o, s->ddpm.timesteps[i], x + o,
                                              &rng[b], noise, n_per);
        if (st != DA_OK) return st;
    }
    return DA_OK;
}

/* ---- generation state -------------------------------------------------------------- */

/* Rows [0, B) of ids/keep/ctx are the unconditional side, [B, 2B) the
 * conditional one: the order of diffusers' torch.cat([uncond, cond]). */
typedef struct gen {
    int B, T, D;
    size_t n_per;          /* C * h * w */
    int guided;            /* w != 1: the UNet also sees the uncond rows */
    float w;
    int *ids;              /* (2B, T) */
    uint8_t *keep;         /* (2B, T) */
    float *ctx;            /* (2B, T, D) */
    float *x, *x_prev, *x0, *eps, *xin, *tsteps, *noise;
    float *eout;           /* (2B, C, h, w): the UNet's output, all rows */
    /* the UNet's cross-attention keys and values per row, kept while the
     * row's context stays what kv_ctx holds (a refiner may swap it) */
    float *kv_buf, *kv_k[DA_UNET_N_ATTN], *kv_v[DA_UNET_N_ATTN];   /* (2B, T, C_i) each */
    float *kv_ctx;         /* (2B, T, D): the context each row's cache was made from */
    uint8_t *kv_ok;        /* (2B): row r's cache is filled */
    da_rng *rng;           /* (B) */
    da_pipeline *p;        /* for the pieces of a model call */
    da_status (*piece)(struct gen *g, da_tape *t, int r0, int nr);
    int row0;              /* first row of the call (B when unguided: cond rows only) */
} gen;

static void gen_free(gen *g)
{
    free(g->ids);
    free(g->keep);
    free(g->ctx);
    free(g->x);
    free(g->x_prev);
    free(g->x0);
    free(g->eps);
    free(g->xin);
    free(g->tsteps);
    free(g->noise);
    free(g->eout);
    free(g->kv_buf);
    free(g->kv_ctx);
    free(g->kv_ok);
    free(g->rng);
}

static da_status gen_alloc(gen *g, da_pipeline *p, int B, float w)
{
    memset(g, 0, sizeof *g);
    g->p = p;
    g->B = B;
    g->T = DA_MAX_TOKENS;
    g->D = p->text->cfg.d_model;
    g->n_per = (size_t)p->vae->cfg.latent_channels * p->latent_h * p->latent_w;
    g->w = w;
    g->guided = w != 1.0f;
    size_t rows = 2 * (size_t)B, n = (size_t)B * g->n_per;
    g->ids = malloc(rows * g->T * sizeof *g->ids);
    g->keep = malloc(rows * g->T);
    g->ctx = malloc(rows * g->T * g->D * sizeof *g->ctx);
    g->x = malloc(n * sizeof(float));
    g->x_prev = malloc(n * sizeof(float));
    g->x0 = malloc(n * sizeof(float));
    g->eps = malloc(n * sizeof(float));
    g->xin = malloc(2 * n * sizeof(float));
    g->tsteps = malloc(rows * sizeof(float));
    g->noise = malloc(g->n_per * sizeof(float));
    g->eout = malloc(2 * n * sizeof(float));
    size_t kv_per_row = 0;
    for (int i = 0; i < DA_UNET_N_ATTN; i++) kv_per_row += 2 * (size_t)g->T * da_unet_attn_channels(p->unet, i);
    g->kv_buf = malloc(rows * kv_per_row * sizeof(float));
    g->kv_ctx = malloc(rows * g->T * g->D * sizeof(float));
    g->kv_ok = calloc(rows, 1);
    for (int i = 0, off = 0; g->kv_buf && i < DA_UNET_N_ATTN; i++) {
        size_t per = rows * g->T * da_unet_attn_channels(p->unet, i);
        g->kv_k[i] = g->kv_buf + off;
        g->kv_v[i] = g->kv_buf + off + per;
        off += 2 * per;
    }
    g->rng = malloc((size_t)B * sizeof *g->rng);
    if (!g->ids || !g->keep || !g->ctx || !g->x || !g->x_prev || !g->x0 || !g->eps || !g->xin || !g->tsteps ||
        !g->noise || !g->eout || !g->kv_buf || !g->kv_ctx || !g->kv_ok || !g->rng) {
        gen_free(g);
        return da_fail(DA_ERR_NOMEM, "pipeline: out of memory for %d images", B);
    }
    return DA_OK;
}

/* One piece of a model call: rows [row0 + r0, row0 + r0 + nr) on tape t */
static da_status gen_piece(void *ctx, int w, int r0, int nr)
{
    gen *g = ctx;
    return g->piece(g, piece_tape(g->p, w), g->row0 + r0, nr);
}

/* g->piece over rows [row0, row0 + n), cut into one piece per thread */
static da_status gen_run(gen *g, da_status (*piece)(gen *, da_tape *, int, int), int row0, int n)
{
    da_status s = ensure_tapes(g->p, da_pieces(n));
    if (s != DA_OK) return s;
    g->piece = piece;
    g->row0 = row0;
    return da_run_pieces(n, gen_piece, g);
}

/* text encoder over rows [r0, r0 + nr) of g->ids into the same rows of g->ctx */
static da_status encode_piece(gen *g, da_tape *t, int r0, int nr)
{
    size_t tok = (size_t)r0 * g->T;
    da_tape_reset(t);
    da_tensor *f = da_text_encoder_forward(t, g->p->text, g->ids + tok, g->keep + tok, nr, g->T);
    if (!f) return DA_ERR_INVALID;   /* the encoder set the message */
    memcpy(g->ctx + tok * g->D, f->data, f->size * sizeof(float));
    return DA_OK;
}

static da_status encode_rows(da_pipeline *p, gen *g, int r0, int nr)
{
    (void)p;
    return gen_run(g, encode_piece, r0, nr);
}

/* Rows [r0, r0 + nr)'s cross-attention keys and values, as leaves over
 * the cache; made first where a row's context is not the one its cache
 * was made from (the first step, or a prompt the refiner swapped) */
static da_status piece_kv(gen *g, da_tape *t, da_tensor *ctx, int r0, int nr, da_unet_kv *kv)
{
    const da_unet *u = g->p->unet;
    size_t row_ctx = (size_t)g->T * g->D;
    const float *c = g->ctx + (size_t)r0 * row_ctx;
    int fresh = 1;
    for (int r = r0; r < r0 + nr && fresh; r++)
        fresh = g->kv_ok[r] && !memcmp(g->kv_ctx + (size_t)r * row_ctx, g->ctx + (size_t)r * row_ctx,
                                       row_ctx * sizeof(float));
    if (!fresh) {
        da_status s = da_unet_context_kv(t, u, ctx, kv);
        if (s != DA_OK) return s;
        for (int i = 0; i < DA_UNET_N_ATTN; i++) {
            size_t off = (size_t)r0 * g->T * da_unet_attn_channels(u, i);
            memcpy(g->kv_k[i] + off, kv->k[i]->data, kv->k[i]->size * sizeof(float));
            memcpy(g->kv_v[i] + off, kv->v[i]->data, kv->v[i]->size * sizeof(float));
        }
        memcpy(g->kv_ctx + (size_t)r0 * row_ctx, c, (size_t)nr * row_ctx * sizeof(float));
        memset(g->kv_ok + r0, 1, (size_t)nr);
    }
    for (int i = 0; i < DA_UNET_N_ATTN; i++) {
        int C = da_unet_attn_channels(u, i), shape[3] = {nr, g->T, C};
        size_t off = (size_t)r0 * g->T * C;
        kv->k[i] = da_leaf(t, g->kv_k[i] + off, NULL, 3, shape);
        kv->v[i] = da_leaf(t, g->kv_v[i] + off, NULL, 3, shape);
    }
    return DA_OK;
}

/* the UNet over rows [r0, r0 + nr) of xin/ctx/keep/tsteps into the same rows of eout */
static da_status unet_piece(gen *g, da_tape *t, int r0, int nr)
{
    da_pipeline *p = g->p;
    size_t n_per = g->n_per, in0 = (size_t)(r0 - (g->guided ? 0 : g->B)) * n_per;
    da_tape_reset(t);
    int xs[4] = {nr, p->vae->cfg.latent_channels, p->latent_h, p->latent_w};
    int cs[3] = {nr, g->T, g->D};
    da_tensor *x = da_leaf(t, g->xin + in0, NULL, 4, xs);
    da_tensor *ctx = da_leaf(t, g->ctx + (size_t)r0 * g->T * g->D, NULL, 3, cs);
    da_unet_kv kv;
    da_status s = piece_kv(g, t, ctx, r0, nr, &kv);
    if (s != DA_OK) return s;
    da_tensor *e = da_unet_forward_kv(t, p->unet, x, g->tsteps + r0, ctx, g->keep + (size_t)r0 * g->T, &kv);
    if (!e) return DA_ERR_INVALID;   /* the UNet set the message */
    memcpy(g->eout + (size_t)r0 * n_per, e->data, (size_t)nr * n_per * sizeof(float));
    return DA_OK;
}

/* the uncond rows: one encoding of the negative prompt, repeated */
static da_status encode_uncond(da_pipeline *p, gen *g, const char *negative)
{
    da_status s = da_prompt_tokens(negative ? negative : DA_UNCOND_PROMPT, g->ids, g->keep);
    if (s == DA_OK) s = encode_rows(p, g, 0, 1);
    if (s != DA_OK) return s;
    size_t T = (size_t)g->T, D = (size_t)g->D;
    for (int b = 1; b < g->B; b++) {
        memcpy(g->ids + b * T, g->ids, T * sizeof *g->ids);
        memcpy(g->keep + b * T, g->keep, T);
        memcpy(g->ctx + b * T * D, g->ctx, T * D * sizeof *g->ctx);
    }
    return DA_OK;
}

/* eps (B, C, h, w) at step i: one UNet call over 2B rows when guided */
static da_status unet_eps(da_pipeline *p, gen *g, const sampler *s, int i)
{
    int B = g->B, rows = g->guided ? 2 * B : B, r0 = g->guided ? 0 : B;
    size_t n = (size_t)B * g->n_per;
    sampler_model_input(s, g->xin, g->x, i, n);
    if (g->guided) memcpy(g->xin + n, g->xin, n * sizeof(float));
    float t = sampler_timestep(s, i);
    for (int r = 0; r < 2 * B; r++) g->tsteps[r] = t;

    (void)p;
    da_status st = gen_run(g, unet_piece, r0, rows);
    if (st != DA_OK) return st;
    const float *e = g->eout + (size_t)r0 * g->n_per;
    if (g->guided) da_cfg_combine(g->eps, e, e + n, g->w, n);
    else memcpy(g->eps, e, n * sizeof(float));
    return DA_OK;
}

/* An ids row: BOS, words of the vocabulary, EOS, then PAD only; errors
 * name `what` (a printf prefix taking the row) */
static da_status check_ids_row(const int *ids, const char *what, int b)
{
    int V = da_vocab_size(), j = 0;
    const char *want = "BOS";
    if (ids[0] == DA_TOK_BOS) {
        for (j = 1; j < DA_MAX_TOKENS && ids[j] > DA_TOK_UNK && ids[j] < V; j++) {}
        want = "a word or EOS";
        if (j < DA_MAX_TOKENS && ids[j] == DA_TOK_EOS) {
            for (j++; j < DA_MAX_TOKENS && ids[j] == DA_TOK_PAD; j++) {}
            if (j == DA_MAX_TOKENS) return DA_OK;
            want = "PAD after EOS";
        }
    }
    char where[64];
    snprintf(where, sizeof where, what, b);
    if (j == DA_MAX_TOKENS) return da_fail(DA_ERR_INVALID, "%s has no EOS", where);
    return da_fail(DA_ERR_INVALID, "%s: id %d at position %d, expected %s", where, ids[j], j, want);
}

/* Apply what the callback asked for: new cond rows, re-encoded once. */
static da_status apply_swap(da_pipeline *p, gen *g, const da_step_info *info, int step)
{
    if (!info->new_prompts && !info->new_ids) return DA_OK;
    if (info->new_prompts && info->new_ids)
        return da_fail(DA_ERR_INVALID, "step %d: the callback set both new_prompts and new_ids", step);
    size_t T = (size_t)g->T;
    int *ids = g->ids + (size_t)g->B * T;
    uint8_t *keep = g->keep + (size_t)g->B * T;
    for (int b = 0; b < g->B; b++) {
        if (info->new_prompts) {
            if (!info->new_prompts[b]) continue;
            da_status s = da_prompt_tokens(info->new_prompts[b], ids + b * T, keep + b * T);
            if (s != DA_OK) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", da_last_error());
                return da_fail(s, "step %d: new prompt of image %d: %s", step, b, msg);
            }
        } else {
            const int *row = info->new_ids + b * T;
            char what[48];
            snprintf(what, sizeof what, "step %d: new_ids row %%d", step);
            da_status s = check_ids_row(row, what, b);
            if (s != DA_OK) return s;
            for (size_t j = 0; j < T; j++) {
                ids[b * T + j] = row[j];
                keep[b * T + j] = row[j] != DA_TOK_PAD;
            }
        }
    }
    return encode_rows(p, g, g->B, g->B);
}

static da_status check_opts(const da_sample_opts *o, int n)
{
    if ((unsigned)o->sampler > DA_SAMPLER_EULER) return da_fail(DA_ERR_INVALID, "unknown sampler %d", (int)o->sampler);
    if (n < 1 || n > MAX_IMAGES) return da_fail(DA_ERR_INVALID, "number of images %d not in [1, %d]", n, MAX_IMAGES);
    if (!isfinite(o->cfg)) return da_fail(DA_ERR_INVALID, "guidance weight must be finite");
    /* the upper bound depends on the steps: da_ddim_init states it */
    if (!(o->eta >= 0.0f && isfinite(o->eta))) return da_fail(DA_ERR_INVALID, "eta must be finite and >= 0");
    if (o->eta != 0.0f && o->sampler != DA_SAMPLER_DDIM)
        return da_fail(DA_ERR_INVALID, "eta is a DDIM option; the %s sampler has none", da_sampler_name(o->sampler));
    return DA_OK;
}

/* A NaN or infinity in a latent (a bad weight, a guidance weight so large
 * that eps overflows) would come out as a black image: fail instead,
 * naming the step and the image. */
static da_status check_finite(const gen *g, int step, int n_steps)
{
    size_t bad = da_first_nonfinite(g->x_prev, (size_t)g->B * g->n_per);
    if (bad == (size_t)-1) return DA_OK;
    return da_fail(DA_ERR_RANGE, "step %d of %d: the latent of image %d is not finite (NaN or infinity; a guidance "
                   "weight of %g, or weights holding such values?)", step + 1, n_steps, (int)(bad / g->n_per),
                   (double)g->w);
}

/* the sampling loop proper; on return g->x holds the result */
static da_status run_steps(da_pipeline *p, gen *g, const sampler *s, int n_steps, da_step_cb cb, void *user)
{
    p->steps_done = 0;
    for (int i = 0; i < n_steps; i++) {
        da_status st = unet_eps(p, g, s, i);
        if (st == DA_OK) st = sampler_step(s, i, g->x_prev, g->x0, g->eps, g->x, g->rng, g->noise, g->B, g->n_per);
        if (st == DA_OK) st = check_finite(g, i, n_steps);
        if (st != DA_OK) return st;
        p->steps_done = i + 1;
        int stop = 0;
        if (cb) {
            da_step_info info = {
                .step = i, .n_steps = n_steps, .timestep = sampler_timestep(s, i), .batch = g->B,
                .channels = p->vae->cfg.latent_channels, .height = p->latent_h, .width = p->latent_w,
                .x = g->x, .x_prev = g->x_prev, .x0 = g->x0, .ids = g->ids + (size_t)g->B * g->T,
            };
            stop = cb(&info, user) != 0;
            st = apply_swap(p, g, &info, i);
            if (st != DA_OK) return st;
        }
        float *tmp = g->x;   /* x_{t-1} becomes the next step's x_t */
        g->x = g->x_prev;
        g->x_prev = tmp;
        if (stop) {
            if (i + 1 < n_steps) memcpy(g->x, g->x0, (size_t)g->B * g->n_per * sizeof(float));
            break;
        }
    }
    return DA_OK;
}

da_status da_sampler_timesteps(const da_pipeline *p, const da_sample_opts *opts, float *t)
{
    if (!p || !opts || !t) return da_fail(DA_ERR_INVALID, "da_sampler_timesteps: NULL argument");
    da_status s = check_opts(opts, 1);
    sampler smp;
    if (s == DA_OK) s = sampler_init(&smp, p, opts);
    if (s != DA_OK) return s;
    for (int i = 0; i < opts->steps; i++) t[i] = sampler_timestep(&smp, i);
    sampler_free(&smp);
    return DA_OK;
}

da_status da_pipeline_generate_ids(da_pipeline *p, const da_sample_opts *opts, const int *ids, const char *negative,
                                   const uint64_t *seeds, int n, da_step_cb cb, void *user, float *out_images,
                                   float *out_latents)
{
    if (!p || !opts || !ids || !seeds) return da_fail(DA_ERR_INVALID, "da_pipeline_generate: NULL argument");
    da_status s = check_opts(opts, n);
    if (s != DA_OK) return s;
    for (int b = 0; b < n; b++) {
        s = check_ids_row(ids + (size_t)b * DA_MAX_TOKENS, "prompt ids row %d", b);
        if (s != DA_OK) return s;
    }
    sampler smp;
    s = sampler_init(&smp, p, opts);
    if (s != DA_OK) return s;
    gen g;
    s = gen_alloc(&g, p, n, opts->cfg);
    if (s != DA_OK) {
        sampler_free(&smp);
        return s;
    }
    size_t T = (size_t)g.T;
    for (size_t j = 0; j < (size_t)n * T; j++) {
        g.ids[n * T + j] = ids[j];
        g.keep[n * T + j] = ids[j] != DA_TOK_PAD;
    }
    if (g.guided) s = encode_uncond(p, &g, negative);
    if (s == DA_OK) s = encode_rows(p, &g, n, n);

    float sigma = sampler_init_sigma(&smp);
    for (int b = 0; b < n && s == DA_OK; b++) {
        float *x = g.x + (size_t)b * g.n_per;
        da_rng_seed(&g.rng[b], seeds[b]);
        da_randn(&g.rng[b], x, g.n_per);   /* the same draws as da_initial_latent */
        for (size_t j = 0; j < g.n_per; j++) x[j] *= sigma;
    }
    if (s == DA_OK) s = run_steps(p, &g, &smp, opts->steps, cb, user);
    if (s == DA_OK && out_latents) memcpy(out_latents, g.x, (size_t)n * g.n_per * sizeof(float));
    if (s == DA_OK && out_images) s = da_pipeline_decode(p, g.x, n, out_images);
    gen_free(&g);
    sampler_free(&smp);
    return s;
}

da_status da_pipeline_generate(da_pipeline *p, const da_sample_opts *opts, const char *const *prompts,
                               const char *negative, const uint64_t *seeds, int n, da_step_cb cb,
                               void *user, float *out_images, float *out_latents)
{
    if (!p || !opts || !prompts || !seeds) return da_fail(DA_ERR_INVALID, "da_pipeline_generate: NULL argument");
    da_status s = check_opts(opts, n);
    if (s != DA_OK) return s;
    for (int b = 0; b < n; b++)
        if (!prompts[b]) return da_fail(DA_ERR_INVALID, "prompt %d is NULL", b);
    int *ids = malloc((size_t)n * DA_MAX_TOKENS * sizeof *ids);
    uint8_t keep[DA_MAX_TOKENS];
    if (!ids) return da_fail(DA_ERR_NOMEM, "pipeline: out of memory for %d prompts", n);
    for (int b = 0; b < n && s == DA_OK; b++) s = da_prompt_tokens(prompts[b], ids + (size_t)b * DA_MAX_TOKENS, keep);
    if (s == DA_OK)
        s = da_pipeline_generate_ids(p, opts, ids, negative, seeds, n, cb, user, out_images, out_latents);
    free(ids);
    return s;
}

/* the VAE decoder over images [i0, i0 + n) of a da_pipeline_decode call */
typedef struct decode_job {
    da_pipeline *p;
    const float *latents;
    float *out;
} decode_job;

static da_status decode_piece(void *ctx, int w, int i0, int n)
{
    decode_job *j = ctx;
    da_pipeline *p = j->p;
    da_tape *t = piece_tape(p, w);
    int C = p->vae->cfg.latent_channels;
    int zs[4] = {n, C, p->latent_h, p->latent_w};
    size_t nz = da_shape_size(4, zs), per = nz / (size_t)n;
    da_tape_reset(t);
    da_tensor *z = da_tensor_new(t, 4, zs, 0);
    const float *lat = j->latents + (size_t)i0 * per;
    float sf = p->vae->cfg.scale_factor;   /* diffusion latent = scale_factor * z */
    for (size_t i = 0; i < nz; i++) z->data[i] = lat[i] / sf;   /* a division, as diffusers */
    da_tensor *img = da_vae_decode(t, p->vae, z);
    if (!img) return DA_ERR_INVALID;   /* the VAE set the message */
    float *out = j->out + (size_t)i0 * (img->size / (size_t)n);
    for (size_t i = 0; i < img->size; i++) {
        float v = (img->data[i] + 1.0f) * 0.5f;
        out[i] = v > 1.0f ? 1.0f : v >= 0.0f ? v : 0.0f;   /* NaN -> 0 */
    }
    return DA_OK;
}

da_status da_pipeline_decode(da_pipeline *p, const float *latents, int n, float *out_images)
{
    if (!p || !latents || !out_images || n < 1 || n > MAX_IMAGES)
        return da_fail(DA_ERR_INVALID, "da_pipeline_decode: bad arguments");
    da_status s = ensure_tapes(p, da_pieces(n));
    if (s != DA_OK) return s;
    decode_job j = {p, latents, out_images};
    return da_run_pieces(n, decode_piece, &j);
}
