/* VAE pretraining: the KL autoencoder on TRAIN-split shapes-world images
 * generated on the fly from tr->data_rng (the posterior noise from
 * tr->noise_rng).
 *
 *   mean, logvar = encode(x)                x (B, 3, 32, 32) in [-1, 1]
 *   z = mean + exp(logvar / 2) eps          reparameterised sample
 *   loss = mse(decode(z), x) + kl_weight * KL(mean, logvar)
 *
 * After the last step, with the final weights (the EMA when kept):
 *   scale_factor = 1 / std(encoder means over scale_images train images)
 *   held-out PSNR = 10 log10(1 / MSE) on [0, 1] pixels of eval_images
 *   HELDOUT-split images reconstructed from their means,
 * and vae.safetensors (scale_factor in its metadata) + vae.json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/pretrain.h"

#define INIT_SEED_XOR 0x5eedfaeu    /* init draws its own stream, not the data's */
#define SCALE_SEED_XOR 0x5ca1ef00u  /* the scale-factor images */
#define EVAL_SEED 20250101u         /* fixed: held-out PSNR is comparable across runs */
#define EVAL_CHUNK 50               /* images per forward in the evaluations */

typedef struct vae_job {
    da_vae *vae;
    float *img;    /* (B, 3, 32, 32) */
} vae_job;

/* ------------------------------------------------------------------------ */
/* The step                                                                 */
/* ------------------------------------------------------------------------ */

static da_status vae_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    (void)micro;
    vae_job *j = user;
    const int B = tr->micro_size;
    da_status s = dp_world_batch(&tr->data_rng, B, 0, j->img, NULL, NULL, NULL, NULL);
    if (s != DA_OK) return s;
    int shape[4] = {B, 3, DA_IMG, DA_IMG};
    da_tensor *x = da_leaf(t, j->img, NULL, 4, shape), *mean, *logvar;
    da_vae_encode(t, j->vae, x, &mean, &logvar);
    da_tensor *z = da_vae_sample(t, mean, logvar, &tr->noise_rng);
    da_tensor *x_hat = da_vae_decode(t, j->vae, z);
    float recon, kl;
    da_tensor *l = da_vae_loss(t, j->vae, x, x_hat, mean, logvar, &recon, &kl);
    da_tape_backward(t, l);
    *loss = l->data[0];
    da_trainer_metric(tr, "recon", recon);
    da_trainer_metric(tr, "kl", kl);
    /* recon is the MSE on [-1, 1] pixels: 4x the MSE on [0, 1] */
    da_trainer_metric(tr, "psnr", 10.0 * log10(4.0 / fmax(recon, 1e-12)));
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* Evaluation: scale factor and held-out PSNR                               */
/* ------------------------------------------------------------------------ */

typedef struct vae_stats {
    double mean_sum, mean_sq;   /* over every element of the encoder means */
    size_t n_mean;
    double sq_err;              /* reconstruction squared error on [0, 1] pixels */
    size_t n_pix;
} vae_stats;

/* n images of `split` drawn from a generator seeded with `seed`, encoded in
 * chunks; with decode, reconstructed from their means (clamped to [-1, 1],
 * what a viewer would show) and compared with the input. */
static da_status vae_eval(const da_vae *m, da_split split, uint64_t seed, int n, int decode, vae_stats *st)
{
    memset(st, 0, sizeof *st);
    da_rng rng;
    da_rng_seed(&rng, seed);
    float *img = malloc((size_t)EVAL_CHUNK * DA_IMG_FLOATS * sizeof(float));
    if (!img) return da_fail(DA_ERR_NOMEM, "out of memory");
    da_tape t;
    da_tape_init(&t, (size_t)1 << 24);
    da_tape_set_grad(&t, 0);
    da_status s = DA_OK;
    da_scene scene;
    for (int done = 0; done < n && s == DA_OK; done += EVAL_CHUNK) {
        int B = n - done < EVAL_CHUNK ? n - done : EVAL_CHUNK;
        for (int b = 0; b < B && s == DA_OK; b++)
            s = da_world_example(&rng, split, &scene, img + (size_t)b * DA_IMG_FLOATS, NULL, 0);
        if (s != DA_OK) break;
        size_t npix = (size_t)B * DA_IMG_FLOATS;
        for (size_t k = 0; k < npix; k++) img[k] = 2.0f * img[k] - 1.0f;
        da_tape_reset(&t);
        int shape[4] = {B, 3, DA_IMG, DA_IMG};
        da_tensor *mean, *logvar;
        da_vae_encode(&t, m, da_leaf(&t, img, NULL, 4, shape), &mean, &logvar);
        for (size_t k = 0; k < mean->size; k++) {
            st->mean_sum += mean->data[k];
            st->mean_sq += (double)mean->data[k] * mean->data[k];
        }
        st->n_mean += mean->size;
        if (!decode) continue;
        da_tensor *x_hat = da_vae_decode(&t, m, mean);
        for (size_t k = 0; k < npix; k++) {
            double v = fmin(fmax(x_hat->data[k], -1.0), 1.0), d = 0.5 * (v - img[k]);
            st->sq_err += d * d;
        }
        st->n_pix += npix;
    }
    da_tape_free(&t);
    free(img);
    return s;
}

/* scale factor and held-out PSNR of the current weights */
static da_status vae_finish(da_vae *m, const da_trainer_config *tc, const da_pretrain_opts *o, float *scale,
                            float *psnr)
{
    vae_stats st;
    da_status s = vae_eval(m, DA_SPLIT_TRAIN, tc->seed ^ SCALE_SEED_XOR, o->scale_images, 0, &st);
    if (s != DA_OK) return s;
    double mu = st.mean_sum / (double)st.n_mean, var = st.mean_sq / (double)st.n_mean - mu * mu;
    if (!(var > 0.0)) return da_fail(DA_ERR_RANGE, "vae: the encoder means have no spread (variance %g)", var);
    *scale = (float)(1.0 / sqrt(var));
    s = vae_eval(m, DA_SPLIT_HELDOUT, EVAL_SEED, o->eval_images, 1, &st);
    if (s != DA_OK) return s;
    *psnr = (float)(10.0 * log10(1.0 / fmax(st.sq_err / (double)st.n_pix, 1e-12)));
    return DA_OK;
}

/* one more metrics line at the final step: {"step":N,"psnr_heldout":..,"scale_factor":..} */
static da_status log_final(const da_trainer *tr, float scale, float psnr)
{
    if (!tr->cfg.metrics_path) return DA_OK;
    da_metrics_log log;
    da_status s = da_metrics_open(&log, tr->cfg.metrics_path, tr->step);
    if (s != DA_OK) return s;
    da_metric f[2] = {{"psnr_heldout", psnr, NULL}, {"scale_factor", scale, NULL}};
    s = da_metrics_write(&log, tr->step, f, 2);
    da_metrics_close(&log);
    return s;
}

static da_status save_outputs(da_vae *m, const char *dir)
{
    /* the pair as one set (dp_ship): the config renamed last */
    dp_ship sh;
    dp_ship_init(&sh);
    const char *path;
    da_status s = dp_ensure_dir(dir);
    if (s == DA_OK) s = dp_ship_add(&sh, dir, "vae", ".safetensors", &path);
    if (s == DA_OK) s = da_vae_save(m, path);
    if (s == DA_OK) s = dp_ship_add(&sh, dir, "vae", ".json", &path);
    if (s == DA_OK) s = da_vae_config_save(&m->cfg, path);
    if (s == DA_OK) s = dp_ship_commit(&sh);
    else dp_ship_abort(&sh);
    return s;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

da_status da_pretrain_vae(const da_trainer_config *tc, const da_pretrain_opts *o, da_pretrain_result *res)
{
    da_pretrain_result r = {.exit_code = 1};
    vae_job j = {0};
    da_trainer *tr = NULL;
    da_status s = DA_OK;
    if (o->vae.in_channels != 3) s = da_fail(DA_ERR_INVALID, "vae: the shapes world has 3 channels, the config %d",
                                            o->vae.in_channels);
    if (s == DA_OK && (o->scale_images < 2 || o->eval_images < 1))
        s = da_fail(DA_ERR_INVALID, "vae: need >= 2 scale images and >= 1 evaluation image");
    if (s == DA_OK && !(j.vae = da_vae_create(&o->vae, 1))) s = DA_ERR_INVALID;  /* create set the message */
    if (s == DA_OK && !(j.img = malloc((size_t)(tc->batch / tc->micro_batches) * DA_IMG_FLOATS * sizeof(float))))
        s = da_fail(DA_ERR_NOMEM, "out of memory");
    if (s == DA_OK) {
        da_rng rng;
        da_rng_seed(&rng, tc->seed ^ INIT_SEED_XOR);
        da_vae_init(j.vae, &rng);
        s = dp_train(tc, o, &j.vae->params, vae_step, &j, &tr, &r);
    }
    if (s == DA_OK && !tr->stop_signal && tr->step >= tc->total_steps) {
        float *live = j.vae->params.data;
        if (tr->ema) j.vae->params.data = tr->ema;
        if (tc->progress) da_log(DA_LOG_INFO, "vae: latent scale factor (%d images), held-out PSNR (%d images)",
                                  o->scale_images, o->eval_images);
        s = vae_finish(j.vae, tc, o, &r.scale_factor, &r.psnr);
        if (s == DA_OK) {
            j.vae->cfg.scale_factor = r.scale_factor;
            s = save_outputs(j.vae, o->out_dir);
        }
        if (s == DA_OK) s = log_final(tr, r.scale_factor, r.psnr);
        j.vae->params.data = live;
    }
    if (s != DA_OK) r.exit_code = 1;
    if (res) *res = r;
    da_trainer_free(tr);
    da_vae_free(j.vae);
    free(j.img);
    return s;
}
