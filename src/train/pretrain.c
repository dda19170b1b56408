/* Pretraining: defaults, dispatch and the helpers the three trainers share
 * (pretrain_clip.c, pretrain_vae.c, pretrain_unet.c). docs/training.md,
 * section "Pretraining", has the recipes and the measured numbers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/pretrain.h"

/* ------------------------------------------------------------------------ */
/* Defaults                                                                 */
/* ------------------------------------------------------------------------ */

static da_pretrain_opts opts_defaults(void)
{
    da_pretrain_opts o;
    memset(&o, 0, sizeof o);
    o.out_dir = "weights";
    o.text = da_text_config_default();
    o.text.vocab_size = da_vocab_size();
    o.clip = da_clip_config_default();
    o.vae = da_vae_config_default();
    o.unet = da_unet_config_default();
    o.dedupe = 1;
    o.cache_size = 8192;
    o.cond_dropout = 0.1f;
    o.scale_images = 2000;
    o.eval_images = 500;
    return o;
}

da_status da_pretrain_defaults(const char *model, da_trainer_config *tc, da_pretrain_opts *o)
{
    da_trainer_config c = da_trainer_defaults();
    da_pretrain_opts p = opts_defaults();
    c.schedule = DA_LR_COSINE;
    c.weight_decay = 0.01f;
    c.clip = 1.0f;
    c.log_every = 10;
    if (model && !strcmp(model, "clip")) {
        p.model = DA_PRETRAIN_CLIP;
        p.name = c.name = "clip";
        c.total_steps = 1500; c.batch = 64; c.lr = 1e-3f; c.min_lr = 1e-5f; c.warmup = 100;
    } else if (model && !strcmp(model, "vae")) {
        p.model = DA_PRETRAIN_VAE;
        p.name = c.name = "vae";
        c.total_steps = 3000; c.batch = 16; c.lr = 1e-3f; c.min_lr = 1e-5f; c.warmup = 100;
        c.weight_decay = 0.0f;
    } else if (model && !strcmp(model, "unet")) {
        p.model = DA_PRETRAIN_UNET;
        p.name = c.name = "unet";
        c.total_steps = 6000; c.batch = 32; c.lr = 1e-3f; c.min_lr = 1e-5f; c.warmup = 100;
        c.ema_decay = 0.995f;  /* 0.999 would keep 0.999^6000 ~ 0.2% of the init; 0.995 averages ~200 steps */
        p.min_snr_gamma = 5.0f;
    } else {
        return da_fail(DA_ERR_INVALID, "unknown model '%s' (expected clip, vae or unet)", model ? model : "(null)");
    }
    *tc = c;
    *o = p;
    return DA_OK;
}

da_status da_pretrain_run(const da_trainer_config *tc, const da_pretrain_opts *o, da_pretrain_result *res)
{
    switch (o->model) {
    case DA_PRETRAIN_CLIP: return da_pretrain_clip(tc, o, res);
    case DA_PRETRAIN_VAE: return da_pretrain_vae(tc, o, res);
    case DA_PRETRAIN_UNET: return da_pretrain_unet(tc, o, res);
    }
    return da_fail(DA_ERR_INVALID, "unknown pretraining model %d", (int)o->model);
}

/* ------------------------------------------------------------------------ */
/* Paths                                                                    */
/* ------------------------------------------------------------------------ */

da_status dp_path(char *buf, const char *dir, const char *name, const char *ext)
{
    int n = snprintf(buf, DP_PATH_MAX, "%s/%s%s", dir, name, ext);
    if (n < 0 || n >= DP_PATH_MAX) return da_fail(DA_ERR_RANGE, "path too long: %s/%s%s", dir, name, ext);
    return DA_OK;
}

da_status dp_check_new_outputs(const char *dir, const char *name, int force)
{
    if (force) return DA_OK;
    const char *ext[2] = {".safetensors", ".json"};
    for (int i = 0; i < 2; i++) {
        char path[DP_PATH_MAX];
        struct stat sb;
        da_status s = dp_path(path, dir, name, ext[i]);
        if (s != DA_OK) return s;
        if (stat(path, &sb) == 0) return da_fail(DA_ERR_INVALID, "%s exists: pass --force to replace it", path);
    }
    return DA_OK;
}

da_status dp_ensure_dir(const char *dir)
{
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return DA_OK;
        return da_fail(DA_ERR_IO, "%s exists and is not a directory", dir);
    }
    return da_fail(DA_ERR_IO, "cannot create directory %s: %s", dir, strerror(errno));
}

/* ------------------------------------------------------------------------ */
/* Shipping a model's files as a set (pretrain.h)                           */
/* ------------------------------------------------------------------------ */

void dp_ship_init(dp_ship *sh) { memset(sh, 0, sizeof *sh); }

da_status dp_ship_add(dp_ship *sh, const char *dir, const char *name, const char *ext, const char **stage)
{
    if (sh->n == DP_SHIP_MAX) return da_fail(DA_ERR_RANGE, "dp_ship_add: more than %d files", DP_SHIP_MAX);
    char *fin = sh->final[sh->n], *stg = sh->stage[sh->n];
    da_status s = dp_path(fin, dir, name, ext);
    if (s != DA_OK) return s;
    int w = snprintf(stg, DP_PATH_MAX, "%s/%s%s.new.tmp.%ld", dir, name, ext, (long)getpid());
    if (w < 0 || w >= DP_PATH_MAX) return da_fail(DA_ERR_RANGE, "path too long: %s", fin);
    *stage = stg;
    sh->n++;
    return DA_OK;
}

void dp_ship_abort(dp_ship *sh)
{
    for (int i = 0; i < sh->n; i++) unlink(sh->stage[i]);
    sh->n = 0;
}

/* DIR/NAME.EXT.old.tmp.PID: the old file kept (as a hard link) until the set is in place */
static void backup_path(char *buf, const char *fin)
{
    snprintf(buf, DP_PATH_MAX + 32, "%s.old.tmp.%ld", fin, (long)getpid());
}

da_status dp_ship_commit(dp_ship *sh)
{
    char backup[DP_SHIP_MAX][DP_PATH_MAX + 32];
    int has_backup[DP_SHIP_MAX] = {0}, existed[DP_SHIP_MAX] = {0};
    /* keep the old files reachable: a failed rename below puts them back.
     * Without hard links (rare file systems) the set is still staged whole
     * first; only the roll-back is lost. */
    for (int i = 0; i < sh->n; i++) {
        backup_path(backup[i], sh->final[i]);
        unlink(backup[i]);
        existed[i] = access(sh->final[i], F_OK) == 0;
        has_backup[i] = existed[i] && link(sh->final[i], backup[i]) == 0;
    }
    da_status s = DA_OK;
    int done = 0;
    for (; done < sh->n; done++) {
        if (rename(sh->stage[done], sh->final[done]) != 0) {
            s = da_fail(DA_ERR_IO, "cannot write %s (rename failed): %s; the previous files are kept",
                        sh->final[done], strerror(errno));
            break;
        }
    }
    if (s != DA_OK) {
        for (int i = 0; i < done; i++) {
            if (has_backup[i]) rename(backup[i], sh->final[i]);
            else if (!existed[i]) unlink(sh->final[i]);   /* it did not exist before this run */
        }
        for (int i = done; i < sh->n; i++) unlink(sh->stage[i]);
    }
    for (int i = 0; i < sh->n; i++)
        if (has_backup[i]) unlink(backup[i]);
    sh->n = 0;
    return s;
}

/* ------------------------------------------------------------------------ */
/* Captions and batches                                                     */
/* ------------------------------------------------------------------------ */

da_status dp_caption_tokens(da_rng *rng, const da_scene *s, int *ids, uint8_t *keep)
{
    char text[DA_CAPTION_MAX];
    da_status st = da_world_caption(rng, s, text, sizeof text);
    if (st == DA_OK) st = da_tokenize(text, ids, keep, NULL);
    return st;
}

void dp_empty_tokens(int *ids, uint8_t *keep)
{
    da_status st = da_tokenize(DA_UNCOND_PROMPT, ids, keep, NULL);
    (void)st;  /* cannot fail on a non-NULL text */
}

static int attr_fits(int want, int have) { return want == DA_ANY || want == have; }

static int object_fits(const da_object *p, const da_object *o)
{
    return attr_fits(p->colour, o->colour) && attr_fits(p->shape, o->shape) && attr_fits(p->size, o->size);
}

/* left <-> right, above <-> below (the enum pairs them: 0 1, 2 3) */
static int converse(int rel) { return rel ^ 1; }

int dp_spec_fits(const da_scene *spec, const da_scene *s)
{
    if (spec->n_objects != s->n_objects || !attr_fits(spec->background, s->background)) return 0;
    if (s->n_objects == 1) return object_fits(&spec->obj[0], &s->obj[0]);
    int same = object_fits(&spec->obj[0], &s->obj[0]) && object_fits(&spec->obj[1], &s->obj[1]) &&
               attr_fits(spec->relation, s->relation);
    int swapped = object_fits(&spec->obj[0], &s->obj[1]) && object_fits(&spec->obj[1], &s->obj[0]) &&
                  (spec->relation == DA_ANY || spec->relation == converse(s->relation));
    return same || swapped;
}

/* example i clashes with an earlier one when either caption describes the
 * other's scene: InfoNCE would push apart a pair that matches */
static int clashes(const da_scene *spec, const da_scene *scene, int i)
{
    for (int j = 0; j < i; j++)
        if (dp_spec_fits(&spec[i], &scene[j]) || dp_spec_fits(&spec[j], &scene[i])) return 1;
    return 0;
}

da_status dp_world_batch(da_rng *rng, int n, int dedupe, float *img, int *ids, uint8_t *keep,
                         da_scene *scenes, int *n_redrawn)
{
    if (dedupe && (!scenes || !ids)) return da_fail(DA_ERR_INVALID, "dp_world_batch: dedupe needs scenes and captions");
    da_scene one, *spec = NULL;
    if (dedupe && !(spec = malloc((size_t)n * sizeof *spec))) return da_fail(DA_ERR_NOMEM, "out of memory");
    char text[DA_CAPTION_MAX];
    int redrawn = 0;
    da_status st = DA_OK;
    for (int i = 0; i < n && st == DA_OK; i++) {
        da_scene *s = scenes ? &scenes[i] : &one;
        for (int tries = 0;; tries++) {
            st = da_world_example(rng, DA_SPLIT_TRAIN, s, img + (size_t)i * DA_IMG_FLOATS, ids ? text : NULL,
                                  sizeof text);
            if (st == DA_OK && dedupe) st = da_parse_prompt(text, &spec[i]);
            if (st != DA_OK || !dedupe || tries == DP_MAX_REDRAWS || !clashes(spec, scenes, i)) break;
            redrawn++;
        }
        if (st == DA_OK && ids) st = da_tokenize(text, ids + (size_t)i * DA_MAX_TOKENS, keep + (size_t)i * DA_MAX_TOKENS, NULL);
    }
    /* [0, 1] -> [-1, 1], the models' input range */
    for (size_t k = 0; st == DA_OK && k < (size_t)n * DA_IMG_FLOATS; k++) img[k] = 2.0f * img[k] - 1.0f;
    free(spec);
    if (n_redrawn) *n_redrawn = redrawn;
    return st;
}

/* ------------------------------------------------------------------------ */
/* The harness around a trainer                                             */
/* ------------------------------------------------------------------------ */

da_status dp_train(const da_trainer_config *tc, const da_pretrain_opts *o, da_params *params,
                   da_step_fn fn, void *user, da_trainer **out, da_pretrain_result *res)
{
    *out = NULL;
    da_trainer *tr;
    /* checkpoints usually go next to the weights: make the folder first */
    da_status s = dp_ensure_dir(o->out_dir);
    if (s == DA_OK) s = da_trainer_create(&tr, tc, params);
    if (s != DA_OK) return s;
    if (o->resume) {
        s = da_trainer_resume(tr, o->resume);
        if (s == DA_OK && tc->progress)
            da_log(DA_LOG_INFO, "%s: resumed from %s at step %ld of %ld", tc->name, o->resume, tr->step,
                    tc->total_steps);
    }
    if (s == DA_OK) s = da_trainer_run(tr, fn, user);
    if (res) {
        res->steps = tr->step;
        res->loss = tr->loss;
        res->stop_signal = tr->stop_signal;
        res->exit_code = da_trainer_exit_code(tr, s);
    }
    if (s != DA_OK) {
        da_trainer_free(tr);
        return s;
    }
    *out = tr;
    return DA_OK;
}

double dp_mse(const float *a, const float *b, size_t n)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        acc += d * d;
    }
    return n ? acc / (double)n : 0.0;
}
