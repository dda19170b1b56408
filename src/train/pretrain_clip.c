/* CLIP pretraining: the text encoder and the CLIP image tower trained
 * jointly with the symmetric InfoNCE loss on (image, caption) pairs of the
 * shapes world's TRAIN split, generated on the fly from tr->data_rng.
 *
 *   per step: B examples (duplicates re-drawn, see dp_world_batch)
 *     img = clip_image(x)                 (B, E)   x in [-1, 1]
 *     txt = text_projection(text(ids)[eos]) (B, E)
 *     loss = InfoNCE(img, txt, logit_scale)
 *
 * The harness trains one da_params: the two towers' tables are joined into
 * one (their names are disjoint, as in a PyTorch CLIP state_dict) and each
 * tower's params then view its slice of the joint buffers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/pretrain.h"

#define INIT_SEED_XOR 0x5eedc11fu  /* init draws its own stream, not the data's */

typedef struct clip_job {
    da_text_encoder *text;
    da_clip *image;
    da_params joint;        /* both tables over one buffer: what the harness trains */
    int shared;             /* the towers' params view the joint buffers */
    int dedupe;
    float *img;             /* (B, 3, 32, 32) */
    int *ids, *ids_t, *eos; /* (B, 24), (B, T) rows cut to the longest caption, (B) */
    uint8_t *keep, *keep_t;
    da_scene *scenes;       /* (B) */
} clip_job;

/* ------------------------------------------------------------------------ */
/* One parameter table for two models                                       */
/* ------------------------------------------------------------------------ */

static da_status joint_build(clip_job *j)
{
    da_params *parts[2] = {&j->text->params, &j->image->params};
    da_params *p = &j->joint;
    da_params_init(p);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < parts[k]->n; i++) da_params_add(p, parts[k]->names[i], parts[k]->ndim[i], parts[k]->shape[i]);
    da_status s = da_params_alloc(p, 1);
    if (s != DA_OK) return s;
    /* entries were added in table order, so each tower is one contiguous slice */
    size_t off = 0;
    for (int k = 0; k < 2; k++) {
        memcpy(p->data + off, parts[k]->data, parts[k]->total * sizeof(float));
        free(parts[k]->data);
        free(parts[k]->grad);
        parts[k]->data = p->data + off;
        parts[k]->grad = p->grad + off;
        off += parts[k]->total;
    }
    j->shared = 1;
    return DA_OK;
}

/* the towers no longer own their buffers: detach before freeing them */
static void job_free(clip_job *j)
{
    if (j->shared) {
        j->text->params.data = j->text->params.grad = NULL;
        j->image->params.data = j->image->params.grad = NULL;
    }
    da_params_free(&j->joint);
    da_text_encoder_free(j->text);
    da_clip_free(j->image);
    free(j->img); free(j->ids); free(j->ids_t); free(j->eos); free(j->keep); free(j->keep_t); free(j->scenes);
}

static da_status job_init(clip_job *j, const da_trainer_config *tc, const da_pretrain_opts *o)
{
    memset(j, 0, sizeof *j);
    if (o->clip.image_size != DA_IMG || o->clip.in_channels != 3)
        return da_fail(DA_ERR_INVALID, "clip: the shapes world has 3x%dx%d images, the config wants %dx%dx%d", DA_IMG,
                       DA_IMG, o->clip.in_channels, o->clip.image_size, o->clip.image_size);
    if (o->text.vocab_size < da_vocab_size())
        return da_fail(DA_ERR_INVALID, "clip: text vocab_size %d is smaller than the tokenizer's %d", o->text.vocab_size,
                       da_vocab_size());
    if (o->text.proj_dim != o->clip.embed_dim)
        return da_fail(DA_ERR_INVALID, "clip: text proj_dim %d differs from the image embed_dim %d", o->text.proj_dim,
                       o->clip.embed_dim);
    j->text = da_text_encoder_create(&o->text, 1);
    j->image = j->text ? da_clip_create(&o->clip, 1) : NULL;
    if (!j->image) return DA_ERR_INVALID;  /* create set the message */
    da_rng rng;
    da_rng_seed(&rng, tc->seed ^ INIT_SEED_XOR);
    da_text_encoder_init(j->text, &rng);
    da_clip_init(j->image, &rng);
    j->dedupe = o->dedupe;
    size_t B = (size_t)(tc->batch / tc->micro_batches);
    j->img = malloc(B * DA_IMG_FLOATS * sizeof(float));
    j->ids = malloc(B * DA_MAX_TOKENS * sizeof(int));
    j->ids_t = malloc(B * DA_MAX_TOKENS * sizeof(int));
    j->eos = malloc(B * sizeof(int));
    j->keep = malloc(B * DA_MAX_TOKENS);
    j->keep_t = malloc(B * DA_MAX_TOKENS);
    j->scenes = malloc(B * sizeof(da_scene));
    if (!j->img || !j->ids || !j->ids_t || !j->eos || !j->keep || !j->keep_t || !j->scenes)
        return da_fail(DA_ERR_NOMEM, "out of memory");
    return joint_build(j);
}

/* ------------------------------------------------------------------------ */
/* The step                                                                 */
/* ------------------------------------------------------------------------ */

/* fraction of images whose most similar caption in the batch is their own */
static double retrieval_accuracy(const float *img, const float *txt, int B, int E)
{
    float *ni = malloc((size_t)B * E * sizeof(float)), *nt = malloc((size_t)B * E * sizeof(float));
    if (!ni || !nt) { free(ni); free(nt); return NAN; }
    for (int b = 0; b < B; b++) {
        double si = 0.0, st = 0.0;
        for (int e = 0; e < E; e++) {
            si += (double)img[b * E + e] * img[b * E + e];
            st += (double)txt[b * E + e] * txt[b * E + e];
        }
        for (int e = 0; e < E; e++) {
            ni[b * E + e] = (float)(img[b * E + e] / fmax(sqrt(si), 1e-12));
            nt[b * E + e] = (float)(txt[b * E + e] / fmax(sqrt(st), 1e-12));
        }
    }
    int hits = 0;
    for (int i = 0; i < B; i++) {
        int best = 0;
        double best_cos = -2.0;
        for (int k = 0; k < B; k++) {
            double c = 0.0;
            for (int e = 0; e < E; e++) c += (double)ni[i * E + e] * nt[k * E + e];
            if (c > best_cos) { best_cos = c; best = k; }
        }
        hits += best == i;
    }
    free(ni);
    free(nt);
    return (double)hits / B;
}

static da_status clip_step(da_trainer *tr, da_tape *t, int micro, void *user, float *loss)
{
    (void)micro;
    clip_job *j = user;
    const int B = tr->micro_size;
    int redrawn = 0;
    da_status s = dp_world_batch(&tr->data_rng, B, j->dedupe, j->img, j->ids, j->keep, j->scenes, &redrawn);
    if (s == DA_OK) s = da_text_eos_positions(j->eos, j->keep, B, DA_MAX_TOKENS);
    if (s != DA_OK) return s;
    /* cut the rows to the longest caption: with causal attention nothing
     * after a row's EOS reaches its pooled feature, so this changes no value
     * that matters and saves a quarter of the text tower's work */
    int T = 1;
    for (int b = 0; b < B; b++) T = j->eos[b] + 1 > T ? j->eos[b] + 1 : T;
    for (int b = 0; b < B; b++) {
        memcpy(j->ids_t + (size_t)b * T, j->ids + (size_t)b * DA_MAX_TOKENS, (size_t)T * sizeof(int));
        memcpy(j->keep_t + (size_t)b * T, j->keep + (size_t)b * DA_MAX_TOKENS, (size_t)T);
    }
    int shape[4] = {B, 3, DA_IMG, DA_IMG};
    da_tensor *img = da_clip_image_forward(t, j->image, da_leaf(t, j->img, NULL, 4, shape));
    da_tensor *feats = img ? da_text_encoder_forward(t, j->text, j->ids_t, j->keep_t, B, T) : NULL;
    if (!feats) return DA_ERR_INVALID;  /* the forward set the message */
    da_tensor *txt = da_text_encoder_pool(t, j->text, feats, j->eos);
    da_tensor *scale = da_clip_logit_scale(t, j->image);
    da_tensor *l = da_clip_loss(t, img, txt, scale);
    da_tape_backward(t, l);
    *loss = l->data[0];
    da_trainer_metric(tr, "acc", retrieval_accuracy(img->data, txt->data, B, img->shape[1]));
    da_trainer_metric(tr, "scale", fmin(exp((double)scale->data[0]), 100.0));
    da_trainer_metric(tr, "redrawn", redrawn);
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* The run                                                                  */
/* ------------------------------------------------------------------------ */

static da_status save_outputs(clip_job *j, const da_trainer *tr, const char *dir)
{
    da_status s = dp_ensure_dir(dir);
    /* the towers view the joint buffer: point them at the EMA for saving */
    float *live = j->joint.data;
    if (tr->ema) {
        j->text->params.data = tr->ema;
        j->image->params.data = tr->ema + j->text->params.total;
    }
    /* the four files as one set (dp_ship): configs renamed last */
    dp_ship sh;
    dp_ship_init(&sh);
    const char *path;
    if (s == DA_OK) s = dp_ship_add(&sh, dir, "text_encoder", ".safetensors", &path);
    if (s == DA_OK) s = da_text_encoder_save(j->text, path);
    if (s == DA_OK) s = dp_ship_add(&sh, dir, "clip", ".safetensors", &path);
    if (s == DA_OK) s = da_clip_save(j->image, path);
    if (s == DA_OK) s = dp_ship_add(&sh, dir, "text_encoder", ".json", &path);
    if (s == DA_OK) s = da_text_config_save(&j->text->cfg, path);
    if (s == DA_OK) s = dp_ship_add(&sh, dir, "clip", ".json", &path);
    if (s == DA_OK) s = da_clip_config_save(&j->image->cfg, path);
    if (s == DA_OK) s = dp_ship_commit(&sh);
    else dp_ship_abort(&sh);
    j->text->params.data = live;
    j->image->params.data = live + j->text->params.total;
    return s;
}

da_status da_pretrain_clip(const da_trainer_config *tc, const da_pretrain_opts *o, da_pretrain_result *res)
{
    da_pretrain_result r = {.exit_code = 1};
    clip_job j;
    da_trainer *tr = NULL;
    da_status s = job_init(&j, tc, o);
    if (s == DA_OK) s = dp_train(tc, o, &j.joint, clip_step, &j, &tr, &r);
    if (s == DA_OK && !tr->stop_signal && tr->step >= tc->total_steps) s = save_outputs(&j, tr, o->out_dir);
    if (s != DA_OK) r.exit_code = 1;
    if (res) *res = r;
    da_trainer_free(tr);
    job_free(&j);
    return s;
}
