/* Preference fine-tuning of the UNet on labelled pairs: Diffusion-DPO, SFT,
 * Diffusion-RPO, Diffusion-KTO (the losses: pref_loss.c; the long form:
 * docs/alignment-preference.md).
 *
 *   start:     the pairs files (dalign pairs) -> winner and loser latents z_w,
 *              z_l (diffusion space) and their prompts' tokens; the frozen
 *              text encoder and VAE, and the UNet to start from, twice: the
 *              policy (trainable) and the reference (a frozen copy)
 *   per step:  B pairs (tr->data_rng); with probability empty_prompt a pair
 *              is trained on the empty prompt; t ~ U{0..T-1}, eps ~ N(0, I)
 *              shared by the two halves of a pair (KTO: every image its own)
 *              x_t = sqrt(a_t) z + sqrt(1 - a_t) eps
 *              m = mse(policy(x_t, t, c), eps) per image, r the same for
 *              the reference; loss = the method's function of (m, r)
 *
 * One tape node (pref_loss_node) turns the policy's output into the loss:
 * its forward computes m and the method's loss, its backward adds
 * dL/dm * 2 (pred - eps) / n. Everything random comes from the trainer's
 * RNGs and the RPO embeddings are recomputed from the pairs at start, so a
 * resumed run continues bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "dalign/train.h"
#include "train/pref.h"
#include "train/pretrain.h"

#define T_TOK DA_MAX_TOKENS
#define EMBED_CHUNK 64   /* images per frozen forward when embedding the pairs (RPO) */

/* every pair of every file, concatenated */
typedef struct pref_data {
    int n;
    int C, h, w;
    size_t lat;                    /* C * h * w */
    float *z_w, *z_l;              /* (n, lat) diffusion-space latents */
    int *ids_w, *ids_l;            /* (n, T) prompt tokens */
    uint8_t *keep_w, *keep_l;
    int E;                         /* RPO: embedding width */
    float *e_w, *e_l;              /* RPO: (n, E) unit-length embeddings */
} pref_data;

typedef struct pref_job {
    da_pref_opts o;
    da_pipeline *pipe;             /* frozen text encoder, VAE; its UNet is the reference */
    da_unet *policy;
    da_tape ref_tape;              /* the reference's forwards, no gradients */
    pref_data d;
    int empty_ids[T_TOK];
    uint8_t empty_keep[T_TOK];
    /* micro-batch scratch, N = 2B images: rows [0, B) winners, [B, 2B) losers */
    int64_t *idx, *t64;
    float *u, *tsteps, *eps, *xt, *m, *r, *dm, *y, *w, *ew, *el;
    pref_loss_args loss;           /* the loss node's arguments (live until backward) */
    int *t, *ids;
    uint8_t *keep;
} pref_job;

/* ------------------------------------------------------------------------ */
/* Names and options                                                        */
/* ------------------------------------------------------------------------ */

static const char *const METHOD_NAMES[] = {"dpo", "sft", "rpo", "kto"};
static const char *const EMBED_NAMES[] = {"both", "text", "image"};

static int name_index(const char *name, const char *const *names, int n)
{
    for (int i = 0; name && i < n; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

da_status da_pref_method_parse(const char *name, da_pref_method *out)
{
    int i = name_index(name, METHOD_NAMES, 4);
    if (i < 0) return da_fail(DA_ERR_INVALID, "unknown preference method '%s' (expected dpo, sft, rpo or kto)", name ? name : "");
    *out = (da_pref_method)i;
    return DA_OK;
}

const char *da_pref_method_name(da_pref_method m) { return (unsigned)m < 4 ? METHOD_NAMES[m] : "?"; }

da_status da_rpo_embed_parse(const char *name, da_rpo_embed *out)
{
    int i = name_index(name, EMBED_NAMES, 3);
    if (i < 0) return da_fail(DA_ERR_INVALID, "unknown RPO embedding '%s' (expected both, text or image)", name ? name : "");
    *out = (da_rpo_embed)i;
    return DA_OK;
}

const char *da_rpo_embed_name(da_rpo_embed e) { return (unsigned)e < 3 ? EMBED_NAMES[e] : "?"; }

void da_pref_defaults(da_pref_method m, da_trainer_config *tc, da_pref_opts *o)
{
    da_trainer_config c = da_trainer_defaults();
    c.name = METHOD_NAMES[(unsigned)m < 4 ? m : 0];
    c.total_steps = 1000;
    c.batch = 16;
    c.lr = 1e-5f;
    c.min_lr = 1e-5f;          /* constant after warmup, as the Diffusion-DPO recipe */
    c.warmup = 50;
    c.schedule = DA_LR_COSINE;
    c.weight_decay = 0.0f;
    c.clip = 1.0f;             /* the reference code's gradient clip */
    c.ema_decay = 0.0f;
    c.log_every = 10;
    c.ckpt_every = 200;
    memset(o, 0, sizeof *o);
    o->method = m;
    o->init = "unet";
    o->beta = 2000.0f;
    o->tau = 0.5f;
    o->embed = DA_RPO_EMBED_BOTH;
    o->empty_prompt = 0.2f;
    o->val_draws = 4;
    *tc = c;
}

da_status da_pref_check(const da_trainer_config *tc, const da_pref_opts *o)
{
    if ((unsigned)o->method > DA_PREF_KTO) return da_fail(DA_ERR_INVALID, "unknown preference method %d", (int)o->method);
    if (o->n_pairs < 1) return da_fail(DA_ERR_INVALID, "no pairs file: give --pairs FILE (made by 'dalign pairs')");
    if (o->n_pairs > DA_PREF_MAX_FILES) return da_fail(DA_ERR_INVALID, "at most %d pairs files", DA_PREF_MAX_FILES);
    if (!o->name || !*o->name || strchr(o->name, '/'))
        return da_fail(DA_ERR_INVALID, "--name must be a plain file name (the output is OUT/NAME.safetensors + NAME.json)");
    if (!(o->beta > 0.0f) || !isfinite(o->beta)) return da_fail(DA_ERR_INVALID, "--beta must be > 0, got %g", (double)o->beta);
    if (!(o->tau > 0.0f) || !isfinite(o->tau)) return da_fail(DA_ERR_INVALID, "--tau must be > 0, got %g", (double)o->tau);
    if (!(o->empty_prompt >= 0.0f && o->empty_prompt <= 1.0f))
        return da_fail(DA_ERR_INVALID, "--empty-prompt must be in [0, 1], got %g", (double)o->empty_prompt);
    if (o->val_pairs && o->val_draws < 1) return da_fail(DA_ERR_INVALID, "validation needs >= 1 draw per pair");
    if ((unsigned)o->embed > DA_RPO_EMBED_IMAGE) return da_fail(DA_ERR_INVALID, "unknown RPO embedding %d", (int)o->embed);
    /* RPO compares every pair with every other of its batch, KTO centres on
     * the batch mean: a micro-batch would change the loss, not just its cost */
    if ((o->method == DA_PREF_RPO || o->method == DA_PREF_KTO) && tc->micro_batches != 1)
        return da_fail(DA_ERR_INVALID, "%s: --micro must be 1 (the loss couples the examples of a batch)",
                       METHOD_NAMES[o->method]);
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* Data: the pairs files                                                    */
/* ------------------------------------------------------------------------ */

static da_status tokens_of(const char *prompt, const char *file, int pair, int *ids, uint8_t *keep)
{
    da_status s = da_prompt_tokens(prompt, ids, keep);
    if (s != DA_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", da_last_error());
        return da_fail(s, "%s: pair %d: %s", file, pair, msg);
    }
    return DA_OK;
}

/* Append one loaded file's pairs to d (which grows). */
static da_status data_append(pref_data *d, const da_pairs *pr, const char *file)
{
    if (d->n == 0) {
        d->C = pr->channels, d->h = pr->height, d->w = pr->width;
        d->lat = (size_t)d->C * d->h * d->w;
    } else if (pr->channels != d->C || pr->height != d->h || pr->width != d->w) {
        return da_fail(DA_ERR_INVALID, "%s: latents are %dx%dx%d, the first pairs file's %dx%dx%d", file, pr->channels,
                       pr->height, pr->width, d->C, d->h, d->w);
    }
    int n = d->n + pr->n;
    float *zw = realloc(d->z_w, (size_t)n * d->lat * sizeof(float));
    if (zw) d->z_w = zw;
    float *zl = realloc(d->z_l, (size_t)n * d->lat * sizeof(float));
    if (zl) d->z_l = zl;
    int *iw = realloc(d->ids_w, (size_t)n * T_TOK * sizeof(int));
    if (iw) d->ids_w = iw;
    int *il = realloc(d->ids_l, (size_t)n * T_TOK * sizeof(int));
    if (il) d->ids_l = il;
    uint8_t *kw = realloc(d->keep_w, (size_t)n * T_TOK);
    if (kw) d->keep_w = kw;
    uint8_t *kl = realloc(d->keep_l, (size_t)n * T_TOK);
    if (kl) d->keep_l = kl;
    if (!zw || !zl || !iw || !il || !kw || !kl) return da_fail(DA_ERR_NOMEM, "out of memory reading %s", file);
    memcpy(d->z_w + (size_t)d->n * d->lat, pr->latents_w, (size_t)pr->n * d->lat * sizeof(float));
    memcpy(d->z_l + (size_t)d->n * d->lat, pr->latents_l, (size_t)pr->n * d->lat * sizeof(float));
    for (int i = 0; i < pr->n; i++) {
        size_t row = (size_t)(d->n + i) * T_TOK;
        da_status s = tokens_of(pr->prompts_w[i], file, i, d->ids_w + row, d->keep_w + row);
        if (s == DA_OK) s = tokens_of(pr->prompts_l[i], file, i, d->ids_l + row, d->keep_l + row);
        if (s != DA_OK) return s;
    }
    d->n = n;
    return DA_OK;
}

/* Read every pairs file and check it fits the models: latent shape and
 * the VAE that made the latents. */
static da_status data_load(pref_job *j)
{
    const da_unet_config *uc = &j->pipe->unet->cfg;
    float scale = j->pipe->vae->cfg.scale_factor;
    da_status s = DA_OK;
    for (int f = 0; f < j->o.n_pairs && s == DA_OK; f++) {
        const char *file = j->o.pairs[f];
        da_pairs pr;
        s = da_pairs_load(file, &pr);
        if (s == DA_OK && (pr.channels != uc->in_channels || pr.height != j->pipe->latent_h ||
                           pr.width != j->pipe->latent_w))
            s = da_fail(DA_ERR_INVALID, "%s: latents are %dx%dx%d but the UNet '%s' takes %dx%dx%d", file,
                        pr.channels, pr.height, pr.width, j->o.init, uc->in_channels, j->pipe->latent_h,
                        j->pipe->latent_w);
        if (s == DA_OK && pr.vae_scale_factor != scale)
            s = da_fail(DA_ERR_INVALID,
                        "%s: its latents were made with a VAE of scale factor %.9g, the weights' VAE has %.9g "
                        "(pairs and weights must come from the same VAE)",
                        file, (double)pr.vae_scale_factor, (double)scale);
        if (s == DA_OK) s = data_append(&j->d, &pr, file);
        da_pairs_free(&pr);
    }
    /* the control of docs/alignment-preference.md: the same pairs, each
     * judged the other way (a real preference signal must then hurt) */
    if (s == DA_OK && j->o.swap_labels) {
        pref_data *d = &j->d;
        float *z = d->z_w; d->z_w = d->z_l; d->z_l = z;
        int *ids = d->ids_w; d->ids_w = d->ids_l; d->ids_l = ids;
        uint8_t *keep = d->keep_w; d->keep_w = d->keep_l; d->keep_l = keep;
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* RPO: the embeddings that define w_ij                                     */
/* ------------------------------------------------------------------------ */

static void normalize_rows(float *x, int n, int E)
{
    for (int i = 0; i < n; i++) {
        float *r = x + (size_t)i * E;
        double ss = 0.0;
        for (int k = 0; k < E; k++) ss += (double)r[k] * r[k];
        float inv = 1.0f / fmaxf((float)sqrt(ss), 1e-12f);
        for (int k = 0; k < E; k++) r[k] *= inv;
    }
}

/* CLIP text embeddings (n, E) of token rows, unit length */
static da_status embed_text(pref_job *j, const int *ids, const uint8_t *keep, int n, float *out)
{
    da_tape *t = &j->ref_tape;
    int eos[EMBED_CHUNK];
    for (int i0 = 0; i0 < n; i0 += EMBED_CHUNK) {
        int B = n - i0 < EMBED_CHUNK ? n - i0 : EMBED_CHUNK;
        da_tape_reset(t);
        const int *id = ids + (size_t)i0 * T_TOK;
        const uint8_t *kp = keep + (size_t)i0 * T_TOK;
        da_tensor *f = da_text_encoder_forward(t, j->pipe->text, id, kp, B, T_TOK);
        da_status s = f ? da_text_eos_positions(eos, kp, B, T_TOK) : DA_ERR_INVALID;
        if (s != DA_OK) return s;
        da_tensor *e = da_text_encoder_pool(t, j->pipe->text, f, eos);
        if (!e) return DA_ERR_INVALID;   /* the pool set the message */
        memcpy(out + (size_t)i0 * j->d.E, e->data, e->size * sizeof(float));
    }
    normalize_rows(out, n, j->d.E);
    return DA_OK;
}

/* CLIP image embeddings (n, E) of diffusion-space latents, unit length */
static da_status embed_images(pref_job *j, const da_clip *clip, const float *z, int n, float *out)
{
    float *img = malloc((size_t)EMBED_CHUNK * DA_IMG_FLOATS * sizeof(float));
    if (!img) return da_fail(DA_ERR_NOMEM, "out of memory");
    da_status s = DA_OK;
    for (int i0 = 0; i0 < n && s == DA_OK; i0 += EMBED_CHUNK) {
        int B = n - i0 < EMBED_CHUNK ? n - i0 : EMBED_CHUNK;
        s = da_pipeline_decode(j->pipe, z + (size_t)i0 * j->d.lat, B, img);
        if (s != DA_OK) break;
        for (size_t k = 0; k < (size_t)B * DA_IMG_FLOATS; k++) img[k] = 2.0f * img[k] - 1.0f;   /* CLIP reads [-1, 1] */
        da_tape_reset(&j->ref_tape);
        int shape[4] = {B, 3, DA_IMG, DA_IMG};
        da_tensor *e = da_clip_image_forward(&j->ref_tape, clip, da_leaf(&j->ref_tape, img, NULL, 4, shape));
        if (!e) s = DA_ERR_INVALID;
        else memcpy(out + (size_t)i0 * j->d.E, e->data, e->size * sizeof(float));
    }
    free(img);
    if (s == DA_OK) normalize_rows(out, n, j->d.E);
    return s;
}

static da_status load_clip(const char *dir, da_clip **out)
{
    char cfg_path[DP_PATH_MAX], path[DP_PATH_MAX];
    da_clip_config c = da_clip_config_default();
    da_status s = dp_path(cfg_path, dir, "clip", ".json");
    if (s == DA_OK) s = dp_path(path, dir, "clip", ".safetensors");
    if (s == DA_OK) s = da_clip_config_load(&c, cfg_path);
    if (s == DA_OK && !(*out = da_clip_create(&c, 0))) s = DA_ERR_INVALID;
    if (s == DA_OK) s = da_clip_load(*out, path);
    return s;
}

/* e = text, image or normalize(text + image) of each image, for both sides */
static da_status rpo_embeddings(pref_job *j, const char *dir)
{
    pref_data *d = &j->d;
    d->E = j->pipe->text->cfg.proj_dim;
    size_t ne = (size_t)d->n * d->E;
    d->e_w = malloc(ne * sizeof(float));
    d->e_l = malloc(ne * sizeof(float));
    float *img = malloc(ne * sizeof(float));
    da_clip *clip = NULL;
    da_status s = d->e_w && d->e_l && img ? DA_OK : da_fail(DA_ERR_NOMEM, "out of memory (RPO embeddings)");
    for (int side = 0; side < 2 && s == DA_OK; side++) {
        float *e = side ? d->e_l : d->e_w;
        if (j->o.embed != DA_RPO_EMBED_IMAGE)
            s = embed_text(j, side ? d->ids_l : d->ids_w, side ? d->keep_l : d->keep_w, d->n, e);
        if (s != DA_OK || j->o.embed == DA_RPO_EMBED_TEXT) continue;
        if (!clip) s = load_clip(dir, &clip);
        if (s == DA_OK) s = embed_images(j, clip, side ? d->z_l : d->z_w, d->n, img);
        if (s != DA_OK) break;
        if (j->o.embed == DA_RPO_EMBED_IMAGE) {
            memcpy(e, img, ne * sizeof(float));
            continue;
        }
        for (size_t k = 0; k < ne; k++) e[k] += img[k];
        normalize_rows(e, d->n, d->E);
    }
    da_clip_free(clip);
    free(img);
    return s;
}

/* ------------------------------------------------------------------------ */
/* The step                                                                 */
/* ------------------------------------------------------------------------ */

/* DPO, SFT and RPO compare the two images of a pair under the same noise */
static int is_paired(const pref_job *j) { return j->o.method != DA_PREF_KTO; }

/* draws, in a fixed order: pair indices, empty-prompt coins, timesteps
 * (data_rng); the noise (noise_rng). Fills the N = 2B rows of x_t, eps,
 * timesteps and tokens. */
static da_status draw_batch(da_trainer *tr, pref_job *j, int B)
{
    const pref_data *d = &j->d;
    const int N = 2 * B, paired = is_paired(j);
    da_status s = da_randint(&tr->data_rng, j->idx, (size_t)B, 0, d->n);
    if (s != DA_OK) return s;
    da_rand(&tr->data_rng, j->u, (size_t)B);
    s = da_randint(&tr->data_rng, j->t64, (size_t)(paired ? B : N), 0, j->pipe->sched.n_train);
    if (s != DA_OK) return s;
    for (int k = 0; k < N; k++) {
        j->t[k] = (int)j->t64[paired ? k % B : k];   /* a pair shares its t */
        j->tsteps[k] = (float)j->t[k];
    }
    if (paired) {
        da_randn(&tr->noise_rng, j->eps, (size_t)B * d->lat);
        memcpy(j->eps + (size_t)B * d->lat, j->eps, (size_t)B * d->lat * sizeof(float));  /* and its eps */
    } else {
        da_randn(&tr->noise_rng, j->eps, (size_t)N * d->lat);
    }
    for (int k = 0; k < N; k++) {
        int b = k % B, win = k < B;
        size_t p = (size_t)j->idx[b];
        float *z0 = j->xt + (size_t)k * d->lat;   /* z, noised in place below */
        memcpy(z0, (win ? d->z_w : d->z_l) + p * d->lat, d->lat * sizeof(float));
        int *ids = j->ids + (size_t)k * T_TOK;
        uint8_t *keep = j->keep + (size_t)k * T_TOK;
        int empty = j->u[b] < j->o.empty_prompt;
        memcpy(ids, empty ? j->empty_ids : (win ? d->ids_w : d->ids_l) + p * T_TOK, T_TOK * sizeof(int));
        memcpy(keep, empty ? j->empty_keep : (win ? d->keep_w : d->keep_l) + p * T_TOK, T_TOK);
        j->y[k] = win ? 1.0f : -1.0f;
    }
    s = da_add_noise(&j->pipe->sched, j->xt, j->xt, j->eps, j->t, N, d->lat);
    if (s != DA_OK) return s;
    if (j->o.method == DA_PREF_RPO) {
        for (int b = 0; b < B; b++) {
            memcpy(j->ew + (size_t)b * d->E, d->e_w + (size_t)j->idx[b] * d->E, (size_t)d->E * sizeof(float));
            memcpy(j->el + (size_t)b * d->E, d->e_l + (size_t)j->idx[b] * d->E, (size_t)d->E * sizeof(float));
        }
        pref_rpo_weights(j->w, j->ew, j->el, B, d->E, j->o.tau);
    }
    return DA_OK;
}

/* r (N): the frozen reference's per-image MSE on the same inputs */
static da_status reference_mse(pref_job *j, da_tensor *ctx, int N)
{
    da_tape *t = &j->ref_tape;
    da_tape_reset(t);
    int shape[4] = {N, j->d.C, j->d.h, j->d.w};
    da_tensor *pred = da_unet_forward(t, j->pipe->unet, da_leaf(t, j->xt, NULL, 4, shape), j->tsteps, ctx, j->keep);
    if (!pred) return DA_ERR_INVALID;
    pref_mse_forward(j->r, pred->data, j->eps, N, j->d.lat);
    return DA_OK;
}

static double mean_of(const float *x, int n)
{
    double s = 0.0;
    for (int k = 0; k < n; k++) s += x[k];
    return s / n;
}

static void log_health(da_trainer *tr, const pref_job *j, int B, const pref_stats *st)
{
    /* winners are rows [0, B), losers [B, 2B), for KTO too (liked, disliked) */
    da_trainer_metric(tr, "acc", (double)st->correct / st->n);
    da_trainer_metric(tr, "margin", st->margin_sum / st->n);
    da_trainer_metric(tr, "mse_w", mean_of(j->m, B));
    da_trainer_metric(tr, "mse_l", mean_of(j->m + B, B));
    da_trainer_metric(tr, "ref_mse_w", mean_of(j->r, B));
    da_trainer_metric(tr, "ref_mse_l", mean_of(j->r + B, B));
    /* how much better than the reference the policy denoises each side:
     * DPO can "win" by gain_l < 0 alone (the loser pushed away) */
    double gw = 0.0, gl = 0.0;
    for (int b = 0; b < B; b++) gw += j->r[b] - j->m[b], gl += j->r[B + b] - j->m[B + b];
    da_trainer_metric(tr, "gain_w", gw / B);
    da_trainer_metric(tr, "gain_l", gl / B);
    if (j->o.method == DA_PREF_RPO) {
        float off, ent;
        pref_rpo_weight_stats(j->w, B, &off, &ent);
        da_trainer_metric(tr, "w_offdiag", off);
        da_trainer_metric(tr, "w_entropy", ent);
    }
}

static da_status pref_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    (void)micro;
    pref_job *j = user;
    const int B = tr->micro_size, N = 2 * B;
    da_status s = draw_batch(tr, j, B);
    if (s != DA_OK) return s;
    /* the text encoder is frozen: nothing of it is recorded */
    da_tensor *ctx = da_text_encoder_forward(t, j->pipe->text, j->ids, j->keep, N, T_TOK);
    if (!ctx) return DA_ERR_INVALID;
    s = reference_mse(j, ctx, N);
    if (s != DA_OK) return s;
    int shape[4] = {N, j->d.C, j->d.h, j->d.w};
    da_tensor *pred = da_unet_forward(t, j->policy, da_leaf(t, j->xt, NULL, 4, shape), j->tsteps, ctx, j->keep);
    if (!pred) return DA_ERR_INVALID;
    j->loss = (pref_loss_args){.method = j->o.method, .B = B, .beta = j->o.beta, .weight_outside = j->o.weight_outside,
                               .n = j->d.lat, .eps = j->eps, .r = j->r, .w = j->w, .y = j->y, .m = j->m, .dm = j->dm};
    da_tensor *l = pref_loss_node(t, pred, &j->loss);
    da_tape_backward(t, l);
    *loss = l->data[0];
    log_health(tr, j, B, &j->loss.st);
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* Validation on held-back pairs                                            */
/* ------------------------------------------------------------------------ */

#define VAL_SEED 0x7a11da7eu   /* the draws depend on the pair index only */
#define VAL_CHUNK 32           /* pairs per forward */

/* m (N) of one UNet on the N images of x (no gradients) */
static da_status unet_mse(pref_job *j, const da_unet *u, da_tensor *ctx, const float *x, const float *ts,
                          const uint8_t *keep, const float *eps, int N, float *m)
{
    da_tape *t = &j->ref_tape;
    da_tape_reset(t);
    int shape[4] = {N, j->d.C, j->d.h, j->d.w};
    da_tensor *pred = da_unet_forward(t, u, da_leaf(t, (float *)x, NULL, 4, shape), ts, ctx, keep);
    if (!pred) return DA_ERR_INVALID;
    pref_mse_forward(m, pred->data, eps, N, j->d.lat);
    return DA_OK;
}

/* one chunk of B validation pairs, draw k: rows [0, B) winners, [B, 2B) losers */
static da_status val_chunk(pref_job *j, const pref_data *v, int i0, int B, int k, double *acc)
{
    const int N = 2 * B;
    for (int b = 0; b < B; b++) {
        /* a generator per (pair, draw): the same draws whatever the chunking */
        da_rng rng;
        da_rng_seed(&rng, VAL_SEED ^ ((uint64_t)(i0 + b) << 8) ^ (uint64_t)k);
        int64_t t;
        da_status s = da_randint(&rng, &t, 1, 0, j->pipe->sched.n_train);
        if (s != DA_OK) return s;
        j->t[b] = j->t[B + b] = (int)t;
        j->tsteps[b] = j->tsteps[B + b] = (float)t;
        da_randn(&rng, j->eps + (size_t)b * v->lat, v->lat);
        memcpy(j->eps + (size_t)(B + b) * v->lat, j->eps + (size_t)b * v->lat, v->lat * sizeof(float));
        for (int side = 0; side < 2; side++) {
            int row = side * B + b;
            memcpy(j->xt + (size_t)row * v->lat, (side ? v->z_l : v->z_w) + (size_t)(i0 + b) * v->lat,
                   v->lat * sizeof(float));
            memcpy(j->ids + (size_t)row * T_TOK, (side ? v->ids_l : v->ids_w) + (size_t)(i0 + b) * T_TOK,
                   T_TOK * sizeof(int));
            memcpy(j->keep + (size_t)row * T_TOK, (side ? v->keep_l : v->keep_w) + (size_t)(i0 + b) * T_TOK, T_TOK);
        }
    }
    da_status s = da_add_noise(&j->pipe->sched, j->xt, j->xt, j->eps, j->t, N, v->lat);
    if (s != DA_OK) return s;
    da_tape ctx_tape;
    da_tape_init(&ctx_tape, (size_t)1 << 20);
    da_tape_set_grad(&ctx_tape, 0);
    da_tensor *ctx = da_text_encoder_forward(&ctx_tape, j->pipe->text, j->ids, j->keep, N, T_TOK);
    s = ctx ? unet_mse(j, j->policy, ctx, j->xt, j->tsteps, j->keep, j->eps, N, j->m) : DA_ERR_INVALID;
    if (s == DA_OK) s = unet_mse(j, j->pipe->unet, ctx, j->xt, j->tsteps, j->keep, j->eps, N, j->r);
    da_tape_free(&ctx_tape);
    if (s != DA_OK) return s;
    for (int b = 0; b < B; b++) {
        float d_w = j->m[b] - j->r[b], d_l = j->m[B + b] - j->r[B + b], margin = -(d_w - d_l) / 2.0f;
        acc[0] += d_w < d_l;
        acc[1] += margin;
        acc[2] += -(double)(fminf(j->o.beta * margin, 0.0f) - da_log1pf(da_expf(-fabsf(j->o.beta * margin))));
        acc[3] += j->m[b], acc[4] += j->m[B + b], acc[5] += j->r[b], acc[6] += j->r[B + b];
    }
    return DA_OK;
}

/* the policy as trained (its EMA when kept) against the reference on the
 * validation pairs */
static da_status validate(pref_job *j, const da_trainer *tr, int micro, da_pref_val *out)
{
    pref_job vj = *j;   /* the same models and scratch, other data */
    memset(&vj.d, 0, sizeof vj.d);
    vj.o.n_pairs = 1;
    vj.o.pairs[0] = j->o.val_pairs;
    vj.o.swap_labels = 0; /* validation judges by the rater's own labels */
    da_status s = data_load(&vj);
    float *live = j->policy->params.data;
    if (tr->ema) j->policy->params.data = tr->ema;
    double acc[7] = {0};
    int K = j->o.val_draws;
    for (int i0 = 0; s == DA_OK && i0 < vj.d.n; i0 += micro)
        for (int k = 0; s == DA_OK && k < K; k++)
            s = val_chunk(&vj, &vj.d, i0, vj.d.n - i0 < micro ? vj.d.n - i0 : micro, k, acc);
    j->policy->params.data = live;
    double n = (double)vj.d.n * K;
    *out = (da_pref_val){.pairs = vj.d.n, .draws = K, .acc = (float)(acc[0] / n), .margin = (float)(acc[1] / n),
                         .dpo_loss = (float)(acc[2] / n), .mse_w = (float)(acc[3] / n), .mse_l = (float)(acc[4] / n),
                         .ref_mse_w = (float)(acc[5] / n), .ref_mse_l = (float)(acc[6] / n)};
    pref_data *d = &vj.d;
    free(d->z_w); free(d->z_l); free(d->ids_w); free(d->ids_l); free(d->keep_w); free(d->keep_l);
    return s;
}

typedef struct val_doc {
    const da_pref_val *v;
    const pref_job *j;
    long steps;
} val_doc;

static void write_val_json(FILE *f, const void *ctx)
{
    const val_doc *d = ctx;
    const da_pref_val *v = d->v;
    fprintf(f, "{\n  \"format\": \"dalign-pref-val-1\",\n  \"method\": \"%s\",\n  \"steps\": %ld,\n",
            da_pref_method_name(d->j->o.method), d->steps);
    fprintf(f, "  \"beta\": %.9g,\n  \"tau\": %.9g,\n  \"pairs\": %d,\n  \"draws\": %d,\n", (double)d->j->o.beta,
            (double)d->j->o.tau, v->pairs, v->draws);
    fprintf(f, "  \"acc\": %.9g,\n  \"margin\": %.9g,\n  \"dpo_loss\": %.9g,\n", (double)v->acc, (double)v->margin,
            (double)v->dpo_loss);
    fprintf(f, "  \"mse_w\": %.9g,\n  \"mse_l\": %.9g,\n  \"ref_mse_w\": %.9g,\n  \"ref_mse_l\": %.9g\n}\n",
            (double)v->mse_w, (double)v->mse_l, (double)v->ref_mse_w, (double)v->ref_mse_l);
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

static da_status job_alloc(pref_job *j, int B)
{
    size_t N = 2 * (size_t)B, nl = N * j->d.lat, E = (size_t)(j->d.E ? j->d.E : 1);
    j->idx = malloc(N * sizeof(int64_t));
    j->t64 = malloc(N * sizeof(int64_t));
    j->t = malloc(N * sizeof(int));
    j->ids = malloc(N * T_TOK * sizeof(int));
    j->keep = malloc(N * T_TOK);
    j->u = malloc(N * sizeof(float));
    j->tsteps = malloc(N * sizeof(float));
    j->eps = malloc(nl * sizeof(float));
    j->xt = malloc(nl * sizeof(float));
    j->m = malloc(N * sizeof(float));
    j->r = malloc(N * sizeof(float));
    j->dm = malloc(N * sizeof(float));
    j->y = malloc(N * sizeof(float));
    j->w = malloc((size_t)B * B * sizeof(float));
    j->ew = malloc((size_t)B * E * sizeof(float));
    j->el = malloc((size_t)B * E * sizeof(float));
    if (!j->idx || !j->t64 || !j->t || !j->ids || !j->keep || !j->u || !j->tsteps || !j->eps || !j->xt || !j->m ||
        !j->r || !j->dm || !j->y || !j->w || !j->ew || !j->el)
        return da_fail(DA_ERR_NOMEM, "out of memory");
    return DA_OK;
}

static da_status job_init(pref_job *j, const da_trainer_config *tc, const da_pref_opts *o, const char *dir)
{
    memset(j, 0, sizeof *j);
    j->o = *o;
    da_tape_init(&j->ref_tape, (size_t)1 << 24);
    da_tape_set_grad(&j->ref_tape, 0);
    da_status s = da_pipeline_load(&j->pipe, dir, o->init);
    if (s == DA_OK) s = data_load(j);
    if (s == DA_OK && j->d.n < tc->batch / tc->micro_batches)
        s = da_fail(DA_ERR_INVALID, "%d pairs are fewer than a micro-batch of %d", j->d.n, tc->batch / tc->micro_batches);
    if (s == DA_OK) s = da_prompt_tokens(DA_UNCOND_PROMPT, j->empty_ids, j->empty_keep);
    if (s == DA_OK && o->method == DA_PREF_RPO) {
        if (tc->progress) da_log(DA_LOG_INFO, "%s: CLIP %s embeddings of %d pairs", tc->name, da_rpo_embed_name(o->embed), j->d.n);
        s = rpo_embeddings(j, dir);
    }
    if (s != DA_OK) return s;
    /* the policy starts as the reference's exact copy */
    if (!(j->policy = da_unet_create(&j->pipe->unet->cfg, 1))) return DA_ERR_INVALID;
    memcpy(j->policy->params.data, j->pipe->unet->params.data, j->policy->params.total * sizeof(float));
    return job_alloc(j, tc->batch / tc->micro_batches);
}

static void job_free(pref_job *j)
{
    da_pipeline_free(j->pipe);
    da_unet_free(j->policy);
    da_tape_free(&j->ref_tape);
    pref_data *d = &j->d;
    free(d->z_w); free(d->z_l); free(d->ids_w); free(d->ids_l); free(d->keep_w); free(d->keep_l);
    free(d->e_w); free(d->e_l);
    free(j->idx); free(j->t64); free(j->t); free(j->ids); free(j->keep); free(j->u); free(j->tsteps);
    free(j->eps); free(j->xt); free(j->m); free(j->r); free(j->dm); free(j->y); free(j->w); free(j->ew); free(j->el);
}

static da_status save_outputs(const pref_job *j, const da_trainer *tr, const da_trainer_config *tc, const char *out_dir)
{
    char beta[32], tau[32], steps[32], seed[32], n[32];
    snprintf(beta, sizeof beta, "%.9g", (double)j->o.beta);
    snprintf(tau, sizeof tau, "%.9g", (double)j->o.tau);
    snprintf(steps, sizeof steps, "%ld", tr->step);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)tc->seed);
    snprintf(n, sizeof n, "%d", j->d.n);
    da_st_meta meta[] = {
        {"format", "dalign-unet"},
        {"trained_by", (char *)da_pref_method_name(j->o.method)},
        {"init", (char *)j->o.init},
        {"beta", beta},
        {"tau", tau},
        {"steps", steps},
        {"seed", seed},
        {"pairs", n},
        {"labels", j->o.swap_labels ? (char *)"swapped" : (char *)"as rated"},
    };
    /* staged, then renamed into place config last, all or none (dp_ship):
     * a rerun with --force never leaves new weights beside an old config */
    dp_ship sh;
    dp_ship_init(&sh);
    const char *staged;
    da_status s = dp_ship_add(&sh, out_dir, j->o.name, ".safetensors", &staged);
    if (s == DA_OK) s = da_trainer_save_weights(tr, staged, 1, meta, (int)(sizeof meta / sizeof meta[0]));
    if (s == DA_OK) s = dp_ship_add(&sh, out_dir, j->o.name, ".json", &staged);
    if (s == DA_OK) s = da_unet_config_save(&j->policy->cfg, staged);
    if (s == DA_OK) s = dp_ship_commit(&sh);
    else dp_ship_abort(&sh);
    return s;
}

da_status da_pref_run(const da_trainer_config *tc, const da_pref_opts *o, da_pref_result *res)
{
    da_pref_result r = {.exit_code = 1};
    const char *dir = da_weights_dir(o->weights_dir);
    const char *out_dir = o->out_dir ? o->out_dir : dir;
    da_status s = da_pref_check(tc, o);
    if (s == DA_OK && !o->resume) s = dp_check_new_outputs(out_dir, o->name, o->force);
    pref_job j;
    memset(&j, 0, sizeof j);
    da_trainer *tr = NULL;
    if (s == DA_OK) s = job_init(&j, tc, o, dir);
    if (s == DA_OK && tc->progress)
        da_log(DA_LOG_INFO, "%s: %d pairs from %d file%s, beta %g%s, init %s, weights %s", tc->name, j.d.n, o->n_pairs,
                o->n_pairs > 1 ? "s" : "", (double)o->beta, o->method == DA_PREF_SFT ? " (logged only)" : "", o->init,
                dir);
    da_pretrain_opts po = {.out_dir = out_dir, .resume = o->resume};
    da_pretrain_result pr = {.exit_code = 1};
    if (s == DA_OK) s = dp_train(tc, &po, &j.policy->params, pref_step, &j, &tr, &pr);
    int done = s == DA_OK && !tr->stop_signal && tr->step >= tc->total_steps;
    if (done) s = save_outputs(&j, tr, tc, out_dir);
    if (done && s == DA_OK && o->val_pairs) {
        s = validate(&j, tr, tc->batch / tc->micro_batches, &r.val);
        char name[DP_PATH_MAX];
        if (s == DA_OK && snprintf(name, sizeof name, "%s.val.json", o->name) >= (int)sizeof name)
            s = da_fail(DA_ERR_RANGE, "name too long: %s", o->name);
        val_doc doc = {&r.val, &j, tr->step};
        if (s == DA_OK) s = da_write_with(out_dir, name, write_val_json, &doc);
        r.validated = s == DA_OK;
        if (s == DA_OK && tc->progress)
            da_log(DA_LOG_INFO, "%s: validation on %d pairs x %d draws: implicit accuracy %.4f, margin %.3g", tc->name,
                    r.val.pairs, r.val.draws, (double)r.val.acc, (double)r.val.margin);
    }
    r.steps = pr.steps, r.loss = pr.loss, r.stop_signal = pr.stop_signal;
    r.exit_code = s == DA_OK ? pr.exit_code : 1;
    r.n_pairs = j.d.n;
    if (res) *res = r;
    da_trainer_free(tr);
    job_free(&j);
    return s;
}
