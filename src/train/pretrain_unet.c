/* UNet pretraining: eps-prediction on VAE latents of TRAIN-split shapes-world
 * images, conditioned on the frozen text encoder's token features.
 *
 *   start:     N train images (a generator seeded from the seed) go through
 *              the frozen VAE encoder once: a cache of posteriors
 *              (mean, std) with each image's scene
 *   per step:  B cache entries (tr->data_rng); a fresh caption phrasing of
 *              each scene, or the empty prompt with probability
 *              cond_dropout (CFG); t ~ U{0..T-1}
 *              z0  = scale_factor * (mean + std * n)     posterior sample
 *              x_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps    (n, eps from tr->noise_rng)
 *              loss = mse(unet(x_t, t, text(caption)), eps)
 *
 * The noise process is the pipeline's default (da_noise_config_default:
 * linear betas 1e-4 .. 0.02 over 1000 steps), saved as scheduler.json. The cache
 * depends only on the seed and the frozen VAE, so a resumed run rebuilds the
 * same cache and continues bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "train/pretrain.h"

#define INIT_SEED_XOR 0x5eed0e7u    /* init draws its own stream, not the data's */
#define CACHE_SEED_XOR 0xcac4e5u    /* the cached images */
#define CACHE_CHUNK 64              /* images per VAE forward when filling the cache */

typedef struct unet_job {
    da_unet *unet;
    da_text_encoder *text;          /* frozen */
    da_noise_config noise;          /* the pipeline's: linear betas 1e-4 .. 0.02, T = 1000 */
    da_schedule sched;
    float cond_dropout;
    float min_snr_gamma;            /* 0: plain MSE */
    /* the latent cache */
    int n_cache;
    int lat_shape[3];               /* (L, h, w) */
    size_t lat;                     /* L * h * w */
    da_scene *scenes;               /* (N) */
    float *mean, *std;              /* (N, L, h, w) */
    float scale;                    /* the VAE's scale factor */
    /* per micro-batch scratch */
    int64_t *idx, *t64;
    int *t, *ids;
    uint8_t *keep;
    float *u, *tsteps, *z0, *eps, *xt, *sw, *target;
} unet_job;

/* ------------------------------------------------------------------------ */
/* Frozen models and the latent cache                                       */
/* ------------------------------------------------------------------------ */

static da_status load_text(unet_job *j, const char *dir)
{
    char cfg_path[DP_PATH_MAX], path[DP_PATH_MAX];
    da_status s = dp_path(cfg_path, dir, "text_encoder", ".json");
    if (s == DA_OK) s = dp_path(path, dir, "text_encoder", ".safetensors");
    da_text_config c = da_text_config_default();
    if (s == DA_OK) s = da_text_config_load(&c, cfg_path);
    if (s == DA_OK && !(j->text = da_text_encoder_create(&c, 0))) s = DA_ERR_INVALID;
    if (s == DA_OK) s = da_text_encoder_load(j->text, path);
    if (s != DA_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", da_last_error());
        return da_fail(s, "unet: cannot load the frozen text encoder from %s (train it with 'dalign train clip'): %s",
                       dir, msg);
    }
    return DA_OK;
}

static da_status load_vae(da_vae **out, const char *dir)
{
    char cfg_path[DP_PATH_MAX], path[DP_PATH_MAX];
    da_status s = dp_path(cfg_path, dir, "vae", ".json");
    if (s == DA_OK) s = dp_path(path, dir, "vae", ".safetensors");
    da_vae_config c = da_vae_config_default();
    if (s == DA_OK) s = da_vae_config_load(&c, cfg_path);
    if (s == DA_OK && !(*out = da_vae_create(&c, 0))) s = DA_ERR_INVALID;
    if (s == DA_OK) s = da_vae_load(*out, path);
    if (s != DA_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", da_last_error());
        return da_fail(s, "unet: cannot load the frozen VAE from %s (train it with 'dalign train vae'): %s", dir, msg);
    }
    return DA_OK;
}

/* Encode n_cache train images (a generator seeded with `seed`) once. */
static da_status cache_fill(unet_job *j, const da_vae *vae, uint64_t seed)
{
    da_rng rng;
    da_rng_seed(&rng, seed);
    float *img = malloc((size_t)CACHE_CHUNK * DA_IMG_FLOATS * sizeof(float));
    if (!img) return da_fail(DA_ERR_NOMEM, "out of memory");
    da_tape t;
    da_tape_init(&t, (size_t)1 << 24);
    da_tape_set_grad(&t, 0);
    da_status s = DA_OK;
    for (int done = 0; done < j->n_cache && s == DA_OK; done += CACHE_CHUNK) {
        int B = j->n_cache - done < CACHE_CHUNK ? j->n_cache - done : CACHE_CHUNK;
        for (int b = 0; b < B && s == DA_OK; b++)
            s = da_world_example(&rng, DA_SPLIT_TRAIN, &j->scenes[done + b], img + (size_t)b * DA_IMG_FLOATS, NULL, 0);
        if (s != DA_OK) break;
        for (size_t k = 0; k < (size_t)B * DA_IMG_FLOATS; k++) img[k] = 2.0f * img[k] - 1.0f;
        da_tape_reset(&t);
        int shape[4] = {B, 3, DA_IMG, DA_IMG};
        da_tensor *mean, *logvar;
        da_vae_encode(&t, vae, da_leaf(&t, img, NULL, 4, shape), &mean, &logvar);
        if (!j->mean) {
            /* the first chunk tells the latent shape */
            memcpy(j->lat_shape, mean->shape + 1, sizeof j->lat_shape);
            j->lat = (size_t)mean->shape[1] * mean->shape[2] * mean->shape[3];
            j->mean = malloc((size_t)j->n_cache * j->lat * sizeof(float));
            j->std = malloc((size_t)j->n_cache * j->lat * sizeof(float));
            if (!j->mean || !j->std) s = da_fail(DA_ERR_NOMEM, "out of memory (latent cache of %d)", j->n_cache);
        }
        if (s != DA_OK) break;
        size_t off = (size_t)done * j->lat;
        memcpy(j->mean + off, mean->data, mean->size * sizeof(float));
        for (size_t k = 0; k < logvar->size; k++) j->std[off + k] = da_expf(0.5f * logvar->data[k]);
    }
    da_tape_free(&t);
    free(img);
    return s;
}

/* ------------------------------------------------------------------------ */
/* The step                                                                 */
/* ------------------------------------------------------------------------ */

/* per-sample MSE of pred vs eps, averaged over the samples with t in [lo, hi) */
static void bucket_metric(da_trainer *tr, const char *name, const unet_job *j, const float *pred, int B, int lo,
                          int hi)
{
    double sum = 0.0;
    int n = 0;
    for (int b = 0; b < B; b++) {
        if (j->t[b] < lo || j->t[b] >= hi) continue;
        sum += dp_mse(pred + (size_t)b * j->lat, j->eps + (size_t)b * j->lat, j->lat);
        n++;
    }
    if (n) da_trainer_metric(tr, name, sum / n);
}

/* draws, in a fixed order: cache indices, dropout, captions, timesteps
 * (data_rng); posterior noise, diffusion noise (noise_rng) */
static da_status draw_batch(da_trainer *tr, unet_job *j, int B)
{
    da_status s = da_randint(&tr->data_rng, j->idx, (size_t)B, 0, j->n_cache);
    if (s != DA_OK) return s;
    da_rand(&tr->data_rng, j->u, (size_t)B);
    for (int b = 0; b < B && s == DA_OK; b++) {
        int *ids = j->ids + (size_t)b * DA_MAX_TOKENS;
        uint8_t *keep = j->keep + (size_t)b * DA_MAX_TOKENS;
        if (j->u[b] < j->cond_dropout) dp_empty_tokens(ids, keep);
        else s = dp_caption_tokens(&tr->data_rng, &j->scenes[j->idx[b]], ids, keep);
    }
    if (s == DA_OK) s = da_randint(&tr->data_rng, j->t64, (size_t)B, 0, j->sched.n_train);
    if (s != DA_OK) return s;
    for (int b = 0; b < B; b++) {
        j->t[b] = (int)j->t64[b];
        j->tsteps[b] = (float)j->t[b];
    }
    da_randn(&tr->noise_rng, j->z0, (size_t)B * j->lat);
    da_randn(&tr->noise_rng, j->eps, (size_t)B * j->lat);
    for (int b = 0; b < B; b++) {
        const float *m = j->mean + (size_t)j->idx[b] * j->lat, *sd = j->std + (size_t)j->idx[b] * j->lat;
        float *z = j->z0 + (size_t)b * j->lat;
        for (size_t k = 0; k < j->lat; k++) z[k] = j->scale * (m[k] + sd[k] * z[k]);
    }
    da_add_noise(&j->sched, j->xt, j->z0, j->eps, j->t, B, j->lat);
    return DA_OK;
}

static da_status unet_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    (void)micro;
    unet_job *j = user;
    const int B = tr->micro_size;
    da_status s = draw_batch(tr, j, B);
    if (s != DA_OK) return s;
    /* the text encoder is frozen (no gradient buffers): nothing of it is recorded */
    da_tensor *ctx = da_text_encoder_forward(t, j->text, j->ids, j->keep, B, DA_MAX_TOKENS);
    if (!ctx) return DA_ERR_INVALID;  /* the forward set the message */
    int shape[4] = {B, j->lat_shape[0], j->lat_shape[1], j->lat_shape[2]};
    da_tensor *pred = da_unet_forward(t, j->unet, da_leaf(t, j->xt, NULL, 4, shape), j->tsteps, ctx, j->keep);
    da_tensor *l;
    if (j->min_snr_gamma > 0.0f) {
        /* mean_b w_b mse_b as one MSE of sqrt(w_b)-scaled pred and eps */
        int wshape[4] = {B, 1, 1, 1};
        for (int b = 0; b < B; b++) {
            float a = j->sched.alphas_cumprod[j->t[b]], snr = a / (1.0f - a);
            j->sw[b] = sqrtf(fminf(snr, j->min_snr_gamma) / snr);
        }
        for (int b = 0; b < B; b++)
            for (size_t k = 0; k < j->lat; k++)
                j->target[(size_t)b * j->lat + k] = j->eps[(size_t)b * j->lat + k] * j->sw[b];
        da_tensor *ps = da_mul(t, pred, da_leaf(t, j->sw, NULL, 4, wshape));
        l = da_mse(t, ps, da_leaf(t, j->target, NULL, 4, shape));
        da_trainer_metric(tr, "mse", dp_mse(pred->data, j->eps, (size_t)B * j->lat));
    } else {
        l = da_mse(t, pred, da_leaf(t, j->eps, NULL, 4, shape));
    }
    da_tape_backward(t, l);
    *loss = l->data[0];
    bucket_metric(tr, "mse_t_lo", j, pred->data, B, 0, 250);
    bucket_metric(tr, "mse_t_hi", j, pred->data, B, 750, 1000);
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

static da_status job_init(unet_job *j, const da_trainer_config *tc, const da_pretrain_opts *o)
{
    memset(j, 0, sizeof *j);
    if (o->cache_size < 1) return da_fail(DA_ERR_INVALID, "unet: the latent cache needs >= 1 image");
    if (!(o->cond_dropout >= 0.0f && o->cond_dropout <= 1.0f))
        return da_fail(DA_ERR_INVALID, "unet: caption dropout must be in [0, 1], got %g", (double)o->cond_dropout);
    const char *dir = o->weights_dir ? o->weights_dir : o->out_dir;
    da_vae *vae = NULL;
    da_status s = load_text(j, dir);
    if (s == DA_OK) s = load_vae(&vae, dir);
    if (s == DA_OK && j->text->cfg.context < DA_MAX_TOKENS)
        s = da_fail(DA_ERR_INVALID, "unet: the text encoder's context %d is shorter than %d tokens",
                    j->text->cfg.context, DA_MAX_TOKENS);
    /* the very schedule the pipeline samples with (same float -> double conversions) */
    j->noise = da_noise_config_default();
    if (s == DA_OK)
        s = da_schedule_init(&j->sched, j->noise.beta_schedule, j->noise.n_train, j->noise.beta_start, j->noise.beta_end);
    j->n_cache = o->cache_size;
    j->cond_dropout = o->cond_dropout;
    j->min_snr_gamma = o->min_snr_gamma;
    if (!(o->min_snr_gamma >= 0.0f)) return da_fail(DA_ERR_INVALID, "unet: min_snr_gamma must be >= 0");
    if (s == DA_OK && !(j->scenes = malloc((size_t)j->n_cache * sizeof *j->scenes)))
        s = da_fail(DA_ERR_NOMEM, "out of memory");
    if (s == DA_OK) {
        double t0 = da_now_s();
        if (tc->progress)
            da_log(DA_LOG_INFO, "%s: encoding %d training images with the frozen VAE (latent cache)", tc->name,
                    j->n_cache);
        s = cache_fill(j, vae, tc->seed ^ CACHE_SEED_XOR);
        j->scale = vae->cfg.scale_factor;
        if (s == DA_OK && tc->progress)
            da_log(DA_LOG_INFO, "%s: cache ready in %.1f s (latent %dx%dx%d, scale factor %.4f)", tc->name,
                    da_now_s() - t0, j->lat_shape[0], j->lat_shape[1], j->lat_shape[2], (double)j->scale);
    }
    da_vae_free(vae);
    if (s != DA_OK) return s;
    /* the frozen models fix the UNet's input channels and context width */
    da_unet_config c = o->unet;
    c.in_channels = c.out_channels = j->lat_shape[0];
    c.context_dim = j->text->cfg.d_model;
    if (!(j->unet = da_unet_create(&c, 1))) return DA_ERR_INVALID;  /* create set the message */
    da_rng rng;
    da_rng_seed(&rng, tc->seed ^ INIT_SEED_XOR);
    da_unet_init(j->unet, &rng);
    size_t B = (size_t)(tc->batch / tc->micro_batches), nl = B * j->lat;
    j->idx = malloc(B * sizeof(int64_t));
    j->t64 = malloc(B * sizeof(int64_t));
    j->t = malloc(B * sizeof(int));
    j->ids = malloc(B * DA_MAX_TOKENS * sizeof(int));
    j->keep = malloc(B * DA_MAX_TOKENS);
    j->u = malloc(B * sizeof(float));
    j->tsteps = malloc(B * sizeof(float));
    j->z0 = malloc(nl * sizeof(float));
    j->eps = malloc(nl * sizeof(float));
    j->xt = malloc(nl * sizeof(float));
    j->sw = malloc(B * sizeof(float));
    j->target = malloc(nl * sizeof(float));
    if (!j->idx || !j->t64 || !j->t || !j->ids || !j->keep || !j->u || !j->tsteps || !j->z0 || !j->eps || !j->xt ||
        !j->sw || !j->target)
        return da_fail(DA_ERR_NOMEM, "out of memory");
    return DA_OK;
}

static void job_free(unet_job *j)
{
    da_unet_free(j->unet);
    da_text_encoder_free(j->text);
    if (j->sched.betas) da_schedule_free(&j->sched);
    free(j->scenes); free(j->mean); free(j->std);
    free(j->idx); free(j->t64); free(j->t); free(j->ids); free(j->keep);
    free(j->u); free(j->tsteps); free(j->z0); free(j->eps); free(j->xt); free(j->sw); free(j->target);
}

static da_status save_outputs(unet_job *j, const da_trainer *tr, const da_pretrain_opts *o)
{
    const char *name = o->name ? o->name : "unet", *path;
    da_status s = dp_ensure_dir(o->out_dir);
    float *live = j->unet->params.data;
    if (tr->ema) j->unet->params.data = tr->ema;
    /* the weights, their config and the noise process it was trained with
     * (for the pipeline) as one set (dp_ship): the configs renamed last */
    dp_ship sh;
    dp_ship_init(&sh);
    if (s == DA_OK) s = dp_ship_add(&sh, o->out_dir, name, ".safetensors", &path);
    if (s == DA_OK) s = da_unet_save(j->unet, path);
    if (s == DA_OK) s = dp_ship_add(&sh, o->out_dir, "scheduler", ".json", &path);
    if (s == DA_OK) s = da_noise_config_save(&j->noise, path);
    if (s == DA_OK) s = dp_ship_add(&sh, o->out_dir, name, ".json", &path);
    if (s == DA_OK) s = da_unet_config_save(&j->unet->cfg, path);
    if (s == DA_OK) s = dp_ship_commit(&sh);
    else dp_ship_abort(&sh);
    j->unet->params.data = live;
    return s;
}

da_status da_pretrain_unet(const da_trainer_config *tc, const da_pretrain_opts *o, da_pretrain_result *res)
{
    da_pretrain_result r = {.exit_code = 1};
    unet_job j;
    da_trainer *tr = NULL;
    da_status s = job_init(&j, tc, o);
    if (s == DA_OK) s = dp_train(tc, o, &j.unet->params, unet_step, &j, &tr, &r);
    if (s == DA_OK && !tr->stop_signal && tr->step >= tc->total_steps) s = save_outputs(&j, tr, o);
    if (s != DA_OK) r.exit_code = 1;
    if (res) *res = r;
    da_trainer_free(tr);
    job_free(&j);
    return s;
}
