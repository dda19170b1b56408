/* The weights directory: where it is, the scheduler config, and loading the
 * three models of the pipeline from it.
 *
 *   DIR/text_encoder.json  DIR/text_encoder.safetensors
 *   DIR/vae.json           DIR/vae.safetensors      (scale_factor in both)
 *   DIR/unet.json          DIR/unet.safetensors     (or another name: unet-b)
 *   DIR/scheduler.json     optional: the noise process the UNet was trained with
 *
 * docs/pipeline.md has the layout. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/json.h"
#include "dalign.h"

#define PATH_CAP 4096

const char *da_weights_dir(const char *override)
{
    if (override) return override;
    const char *env = getenv("DALIGN_WEIGHTS");
    return env && *env ? env : "weights";
}

/* ---- scheduler.json ----------------------------------------------------- */

da_noise_config da_noise_config_default(void)
{
    da_noise_config c = {
        .n_train = 1000, .beta_schedule = DA_BETA_LINEAR, .beta_start = 1e-4f, .beta_end = 0.02f,
        .prediction = DA_PRED_EPSILON, .spacing = DA_SPACING_LEADING, .steps_offset = 0,
        .clip_sample = 0, .clip_sample_range = 1.0f, .set_alpha_to_one = 1,
    };
    return c;
}

static const char *const beta_names[] = {"linear", "scaled_linear"};
static const char *const pred_names[] = {"epsilon", "v_prediction", "sample"};
static const char *const spacing_names[] = {"leading", "trailing", "linspace"};

static da_status read_text(const char *path, char **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return da_fail(DA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16;   /* a config is tiny; anything longer is not one */
    char *buf = malloc(cap);
    size_t len = buf ? fread(buf, 1, cap, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (!buf) return da_fail(DA_ERR_NOMEM, "out of memory reading %s", path);
    if (err || len == cap) {
        free(buf);
        return err ? da_fail(DA_ERR_IO, "cannot read %s", path)
                   : da_fail(DA_ERR_FORMAT, "%s: larger than %zu bytes", path, cap);
    }
    *out = buf;
    *n = len;
    return DA_OK;
}

static int key_is(const da_json_value *v, const char *k) { return v->key_len == strlen(k) && !strcmp(v->key, k); }

static da_status get_number(const char *path, const da_json_value *v, double lo, double hi, double *out)
{
    char *end;
    double d = v->type == DA_JSON_NUMBER ? strtod(v->str, &end) : 0.0;
    if (v->type != DA_JSON_NUMBER || *end || !(d >= lo && d <= hi))
        return da_fail(DA_ERR_FORMAT, "%s: '%s' must be a number in [%g, %g]", path, v->key, lo, hi);
    *out = d;
    return DA_OK;
}

static da_status get_int(const char *path, const da_json_value *v, int lo, int hi, int *out)
{
    double d = 0.0;
    da_status s = get_number(path, v, lo, hi, &d);
    if (s == DA_OK && d != (int)d) s = da_fail(DA_ERR_FORMAT, "%s: '%s' must be an integer", path, v->key);
    if (s == DA_OK) *out = (int)d;
    return s;
}

static da_status get_bool(const char *path, const da_json_value *v, int *out)
{
    if (v->type != DA_JSON_TRUE && v->type != DA_JSON_FALSE)
        return da_fail(DA_ERR_FORMAT, "%s: '%s' must be true or false", path, v->key);
    *out = v->type == DA_JSON_TRUE;
    return DA_OK;
}

/* the index of v's string in names[0..n), for the enums */
static da_status get_enum(const char *path, const da_json_value *v, const char *const *names, int n, int *out)
{
    for (int i = 0; v->type == DA_JSON_STRING && i < n; i++)
        if (!strcmp(v->str, names[i])) {
            *out = i;
            return DA_OK;
        }
    return da_fail(DA_ERR_FORMAT, "%s: '%s' must be one of \"%s\", \"%s\"%s%s%s", path, v->key, names[0], names[1],
                   n > 2 ? ", \"" : "", n > 2 ? names[2] : "", n > 2 ? "\"" : "");
}

static da_status noise_member(const char *path, const da_json_value *v, da_noise_config *c)
{
    double d = 0.0;
    int e = 0;
    da_status s;
    if (key_is(v, "num_train_timesteps")) return get_int(path, v, 1, 100000, &c->n_train);
    if (key_is(v, "beta_start") || key_is(v, "beta_end")) {
        s = get_number(path, v, 0.0, 1.0, &d);
        if (s == DA_OK) *(key_is(v, "beta_start") ? &c->beta_start : &c->beta_end) = (float)d;
        return s;
    }
    if (key_is(v, "beta_schedule")) {
        s = get_enum(path, v, beta_names, 2, &e);
        if (s == DA_OK) c->beta_schedule = (da_beta_schedule)e;
        return s;
    }
    if (key_is(v, "prediction_type")) {
        s = get_enum(path, v, pred_names, 3, &e);
        if (s == DA_OK) c->prediction = (da_prediction)e;
        return s;
    }
    if (key_is(v, "timestep_spacing")) {
        s = get_enum(path, v, spacing_names, 3, &e);
        if (s == DA_OK) c->spacing = (da_spacing)e;
        return s;
    }
    if (key_is(v, "steps_offset")) return get_int(path, v, 0, 100000, &c->steps_offset);
    if (key_is(v, "clip_sample")) return get_bool(path, v, &c->clip_sample);
    if (key_is(v, "clip_sample_range")) {
        s = get_number(path, v, 1e-6, 1e6, &d);
        if (s == DA_OK) c->clip_sample_range = (float)d;
        return s;
    }
    if (key_is(v, "set_alpha_to_one")) return get_bool(path, v, &c->set_alpha_to_one);
    return da_fail(DA_ERR_FORMAT, "%s: unknown key '%s'", path, v->key);
}

da_status da_noise_config_load(da_noise_config *cfg, const char *path)
{
    char *text = NULL;
    size_t n = 0;
    da_status s = read_text(path, &text, &n);
    if (s != DA_OK) return s;
    da_json_value root;
    char err[256];
    int bad = da_json_parse(text, n, &root, err, sizeof err);
    free(text);
    if (bad) return da_fail(DA_ERR_FORMAT, "%s: %s", path, err);
    da_noise_config c = *cfg;
    if (root.type != DA_JSON_OBJECT) s = da_fail(DA_ERR_FORMAT, "%s: not a JSON object", path);
    for (int i = 0; s == DA_OK && i < root.n; i++) {
        for (int j = 0; j < i && s == DA_OK; j++)
            if (key_is(&root.items[j], root.items[i].key))
                s = da_fail(DA_ERR_FORMAT, "%s: duplicate key '%s'", path, root.items[i].key);
        if (s == DA_OK) s = noise_member(path, &root.items[i], &c);
    }
    da_json_free(&root);
    if (s == DA_OK && !(c.beta_start < c.beta_end))
        s = da_fail(DA_ERR_FORMAT, "%s: beta_start must be below beta_end", path);
    if (s == DA_OK) *cfg = c;
    return s;
}

da_status da_noise_config_save(const da_noise_config *c, const char *path)
{
    char tmp[PATH_CAP];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return da_fail(DA_ERR_INVALID, "path too long: %s", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return da_fail(DA_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f,
            "{\n  \"num_train_timesteps\": %d,\n  \"beta_schedule\": \"%s\",\n  \"beta_start\": %.9g,\n"
            "  \"beta_end\": %.9g,\n  \"prediction_type\": \"%s\",\n  \"timestep_spacing\": \"%s\",\n"
            "  \"steps_offset\": %d,\n  \"clip_sample\": %s,\n  \"clip_sample_range\": %.9g,\n"
            "  \"set_alpha_to_one\": %s\n}\n",
            c->n_train, beta_names[c->beta_schedule], (double)c->beta_start, (double)c->beta_end,
            pred_names[c->prediction], spacing_names[c->spacing], c->steps_offset,
            c->clip_sample ? "true" : "false", (double)c->clip_sample_range,
            c->set_alpha_to_one ? "true" : "false");
    /* temp file, fsync, rename: never a half-written config */
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return da_fail(DA_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return DA_OK;
}

/* ---- loading the models --------------------------------------------------- */

/* Messages of the model loaders do not always name the file: make sure they do. */
static da_status with_path(da_status s, const char *path)
{
    if (s == DA_OK || strstr(da_last_error(), path)) return s;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", da_last_error());
    return da_fail(s, "%s: %s", path, msg);
}

static da_status join(char *out, const char *dir, const char *name, const char *ext)
{
    if (snprintf(out, PATH_CAP, "%s/%s%s", dir, name, ext) >= PATH_CAP)
        return da_fail(DA_ERR_INVALID, "path too long: %s/%s%s", dir, name, ext);
    return DA_OK;
}

static da_status load_text(const char *dir, da_text_encoder **out)
{
    char cpath[PATH_CAP], wpath[PATH_CAP];
    da_status s = join(cpath, dir, "text_encoder", ".json");
    if (s == DA_OK) s = join(wpath, dir, "text_encoder", ".safetensors");
    da_text_config c = da_text_config_default();
    if (s == DA_OK) s = with_path(da_text_config_load(&c, cpath), cpath);
    if (s != DA_OK) return s;
    da_text_encoder *m = da_text_encoder_create(&c, 0);
    if (!m) return with_path(DA_ERR_INVALID, cpath);
    s = with_path(da_text_encoder_load(m, wpath), wpath);
    if (s != DA_OK) da_text_encoder_free(m);
    else *out = m;
    return s;
}

static da_status load_vae(const char *dir, da_vae **out)
{
    char cpath[PATH_CAP], wpath[PATH_CAP];
    da_status s = join(cpath, dir, "vae", ".json");
    if (s == DA_OK) s = join(wpath, dir, "vae", ".safetensors");
    da_vae_config c = da_vae_config_default();
    if (s == DA_OK) s = with_path(da_vae_config_load(&c, cpath), cpath);
    if (s != DA_OK) return s;
    da_vae *m = da_vae_create(&c, 0);
    if (!m) return with_path(DA_ERR_INVALID, cpath);
    s = with_path(da_vae_load(m, wpath), wpath);
    if (s != DA_OK) da_vae_free(m);
    else *out = m;
    return s;
}

static da_status load_unet(const char *dir, const char *name, da_unet **out)
{
    char cpath[PATH_CAP], wpath[PATH_CAP];
    da_status s = join(cpath, dir, name, ".json");
    if (s == DA_OK) s = join(wpath, dir, name, ".safetensors");
    da_unet_config c = da_unet_config_default();
    if (s == DA_OK) s = with_path(da_unet_config_load(&c, cpath), cpath);
    if (s != DA_OK) return s;
    da_unet *m = da_unet_create(&c, 0);
    if (!m) return with_path(DA_ERR_INVALID, cpath);
    s = with_path(da_unet_load(m, wpath), wpath);
    if (s != DA_OK) da_unet_free(m);
    else *out = m;
    return s;
}

/* DIR/scheduler.json when it exists, else the defaults */
static da_status load_noise(const char *dir, da_noise_config *c)
{
    char path[PATH_CAP];
    *c = da_noise_config_default();
    da_status s = join(path, dir, "scheduler", ".json");
    if (s != DA_OK || access(path, F_OK) != 0) return s;
    return da_noise_config_load(c, path);
}

da_status da_pipeline_load(da_pipeline **out, const char *dir, const char *unet_name)
{
    *out = NULL;
    if (!dir) return da_fail(DA_ERR_INVALID, "da_pipeline_load: NULL directory");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return da_fail(DA_ERR_IO, "weights directory '%s' not found (use --weights DIR or set DALIGN_WEIGHTS)",
                       dir);
    da_text_encoder *text = NULL;
    da_vae *vae = NULL;
    da_unet *unet = NULL;
    da_noise_config noise;
    da_status s = load_text(dir, &text);
    if (s == DA_OK) s = load_vae(dir, &vae);
    if (s == DA_OK) s = load_unet(dir, unet_name ? unet_name : "unet", &unet);
    if (s == DA_OK) s = load_noise(dir, &noise);
    if (s == DA_OK) s = da_pipeline_create(out, text, vae, unet, &noise);
    if (s != DA_OK) {
        da_text_encoder_free(text);
        da_vae_free(vae);
        da_unet_free(unet);
        return s;
    }
    (*out)->owns_models = 1;
    return DA_OK;
}
