/* The weights directory: where it is, the scheduler config, and the one
 * loader of the models in it (weights.h):
 *
 *   DIR/text_encoder.json  DIR/text_encoder.safetensors
 *   DIR/vae.json           DIR/vae.safetensors      (scale_factor in both)
 *   DIR/unet.json          DIR/unet.safetensors     (or another name: unet-b,
 *                                                    or FILE.safetensors + FILE.json anywhere)
 *   DIR/scheduler.json     optional: the noise process the UNet was trained with
 *   DIR/clip.json          DIR/clip.safetensors     (the evaluation's image embeddings)
 *
 * docs/pipeline.md has the layout. */
#include "pipeline/weights.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"

#define PATH_CAP 4096
#define CONFIG_MAX 65535   /* bytes of scheduler.json at most */

/* Where `make install` puts the weights ($(PREFIX)/share/dalign/weights);
 * the Makefile passes it. A build without it (another build system) falls
 * back to ./weights alone. */
#ifndef DA_WEIGHTS_DIR
#define DA_WEIGHTS_DIR "weights"
#endif

const char *da_weights_dir(const char *override)
{
    if (override) return override;
    const char *env = getenv("DALIGN_WEIGHTS");
    if (env && *env) return env;
    /* a clone's own weights first, so the repository's dalign and tests
     * never pick up an installed copy */
    struct stat sb;
    if (stat("weights", &sb) == 0 && S_ISDIR(sb.st_mode)) return "weights";
    return DA_WEIGHTS_DIR;
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
    da_status s = da_read_file(path, CONFIG_MAX, &text, &n);   /* a config is tiny; anything longer is not one */
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
    char text[1024];   /* the ten keys with their longest values fit in a third of it */
    int n = snprintf(text, sizeof text,
            "{\n  \"num_train_timesteps\": %d,\n  \"beta_schedule\": \"%s\",\n  \"beta_start\": %.9g,\n"
            "  \"beta_end\": %.9g,\n  \"prediction_type\": \"%s\",\n  \"timestep_spacing\": \"%s\",\n"
            "  \"steps_offset\": %d,\n  \"clip_sample\": %s,\n  \"clip_sample_range\": %.9g,\n"
            "  \"set_alpha_to_one\": %s\n}\n",
            c->n_train, beta_names[c->beta_schedule], (double)c->beta_start, (double)c->beta_end,
            pred_names[c->prediction], spacing_names[c->spacing], c->steps_offset,
            c->clip_sample ? "true" : "false", (double)c->clip_sample_range,
            c->set_alpha_to_one ? "true" : "false");
    return da_write_atomic(path, text, (size_t)n);   /* never a half-written config */
}

/* ---- loading the models --------------------------------------------------- */

/* Every loader error names its file, by one rule. A file that cannot be read
 * is found before its loader runs: "<what> FILE: <why>". After that every
 * message starts with "FILE: ": the loader's own when it already does
 * (da_cfg_read, da_params_load once the file parsed), else with "FILE: "
 * put in front (a config's checks, the safetensors parser, a create that
 * returns NULL). The path is never searched for anywhere in a message: a
 * short path matches almost any message. */
da_status da_error_named(da_status s, const char *path)
{
    size_t n = strlen(path);
    const char *m = da_last_error();
    if (s == DA_OK || (!strncmp(m, path, n) && m[n] == ':')) return s;
    char why[1024];   /* da_fail overwrites the message it is given */
    snprintf(why, sizeof why, "%s", m);
    return da_fail(s, "%s: %s", path, why);
}

static da_status readable(const char *what, const char *path)
{
    if (access(path, R_OK) == 0) return DA_OK;
    return da_fail(DA_ERR_IO, "%s %s: %s", what, path, strerror(errno));
}

/* a model's two files: its config (.json) and its weights (.safetensors) */
typedef struct model_files {
    char json[PATH_CAP], st[PATH_CAP];
} model_files;

/* DIR/NAME.json and DIR/NAME.safetensors */
static da_status files_in(model_files *f, const char *dir, const char *name)
{
    if (snprintf(f->json, PATH_CAP, "%s/%s.json", dir, name) >= PATH_CAP ||
        snprintf(f->st, PATH_CAP, "%s/%s.safetensors", dir, name) >= PATH_CAP)
        return da_fail(DA_ERR_INVALID, "path too long: %s/%s.safetensors", dir, name);
    return DA_OK;
}

static int is_weights_file(const char *path)
{
    size_t n = strlen(path), e = strlen(".safetensors");
    return n > e && !strcmp(path + n - e, ".safetensors");
}

/* FILE.safetensors and FILE.json beside it, both readable: a path the user
 * typed is checked before anything loads */
static da_status files_at(model_files *f, const char *st, const char *what)
{
    size_t stem = strlen(st) - strlen(".safetensors");   /* FILE.json is the shorter of the two */
    if (stem + sizeof ".safetensors" > PATH_CAP) return da_fail(DA_ERR_INVALID, "path too long: %s", st);
    memcpy(f->st, st, stem + sizeof ".safetensors");
    memcpy(f->json, st, stem);
    memcpy(f->json + stem, ".json", sizeof ".json");
    if (access(f->st, R_OK) != 0) return da_fail(DA_ERR_IO, "%s file %s: %s", what, f->st, strerror(errno));
    if (access(f->json, R_OK) != 0)
        return da_fail(DA_ERR_IO, "%s config %s (expected beside %s): %s", what, f->json, f->st, strerror(errno));
    return DA_OK;
}

/* The loaders below: config, create, weights, each step named by the rule
 * above. On an error *out may hold the model: the caller frees it. Each
 * model loaded is noted at DA_LOG_DEBUG (a host's log shows which files
 * it runs on; stderr stays quiet by default). */

static da_status loaded(da_status s, const char *what, const char *path, size_t n_params)
{
    if (s == DA_OK) da_log(DA_LOG_DEBUG, "dalign: loaded %s %s (%zu parameters)", what, path, n_params);
    return s;
}

static da_status load_text(const model_files *f, da_text_encoder **out)
{
    da_text_config c = da_text_config_default();
    da_status s = readable("text encoder config", f->json);
    if (s == DA_OK) s = da_error_named(da_text_config_load(&c, f->json), f->json);
    if (s == DA_OK && !(*out = da_text_encoder_create(&c, 0))) s = da_error_named(DA_ERR_INVALID, f->json);
    if (s == DA_OK) s = readable("text encoder weights", f->st);
    if (s == DA_OK) s = da_error_named(da_text_encoder_load(*out, f->st), f->st);
    return loaded(s, "text encoder", f->st, s == DA_OK ? (*out)->params.total : 0);
}

static da_status load_vae(const model_files *f, da_vae **out)
{
    da_vae_config c = da_vae_config_default();
    da_status s = readable("VAE config", f->json);
    if (s == DA_OK) s = da_error_named(da_vae_config_load(&c, f->json), f->json);
    if (s == DA_OK && !(*out = da_vae_create(&c, 0))) s = da_error_named(DA_ERR_INVALID, f->json);
    if (s == DA_OK) s = readable("VAE weights", f->st);
    if (s == DA_OK) s = da_error_named(da_vae_load(*out, f->st), f->st);
    return loaded(s, "VAE", f->st, s == DA_OK ? (*out)->params.total : 0);
}

static da_status load_unet(const model_files *f, da_unet **out)
{
    da_unet_config c = da_unet_config_default();
    da_status s = readable("UNet config", f->json);
    if (s == DA_OK) s = da_error_named(da_unet_config_load(&c, f->json), f->json);
    if (s == DA_OK && !(*out = da_unet_create(&c, 0))) s = da_error_named(DA_ERR_INVALID, f->json);
    if (s == DA_OK) s = readable("UNet weights", f->st);
    if (s == DA_OK) s = da_error_named(da_unet_load(*out, f->st), f->st);
    return loaded(s, "UNet", f->st, s == DA_OK ? (*out)->params.total : 0);
}

/* DIR/scheduler.json when it exists, else the defaults */
static da_status load_noise(const char *dir, da_noise_config *c)
{
    char path[PATH_CAP];
    *c = da_noise_config_default();
    if (snprintf(path, sizeof path, "%s/scheduler.json", dir) >= (int)sizeof path)
        return da_fail(DA_ERR_INVALID, "path too long: %s/scheduler.json", dir);
    if (access(path, F_OK) != 0) return DA_OK;
    return da_noise_config_load(c, path);   /* each of its messages names the file */
}

static da_status check_dir(const char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return da_fail(DA_ERR_IO,
                       "weights directory '%s' not found (use --weights DIR or set DALIGN_WEIGHTS; without them "
                       "./weights, else %s)", dir, DA_WEIGHTS_DIR);
    return DA_OK;
}

/* text encoder and VAE of dir, the UNet of unet_files: a pipeline that owns all three */
static da_status load_pipeline(da_pipeline **out, const char *dir, const model_files *unet_files)
{
    model_files text_files, vae_files;
    da_text_encoder *text = NULL;
    da_vae *vae = NULL;
    da_unet *unet = NULL;
    da_noise_config noise;
    da_status s = files_in(&text_files, dir, "text_encoder");
    if (s == DA_OK) s = files_in(&vae_files, dir, "vae");
    if (s == DA_OK) s = load_text(&text_files, &text);
    if (s == DA_OK) s = load_vae(&vae_files, &vae);
    if (s == DA_OK) s = load_unet(unet_files, &unet);
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

da_status da_pipeline_load(da_pipeline **out, const char *dir, const char *unet_name)
{
    *out = NULL;
    if (!dir) return da_fail(DA_ERR_INVALID, "da_pipeline_load: NULL directory");
    model_files unet;
    da_status s = check_dir(dir);
    if (s == DA_OK) s = files_in(&unet, dir, unet_name ? unet_name : "unet");
    return s == DA_OK ? load_pipeline(out, dir, &unet) : s;
}

da_status da_weights_load_pipeline(da_pipeline **out, const char *dir, const char *unet)
{
    *out = NULL;
    if (!dir) return da_fail(DA_ERR_INVALID, "da_weights_load_pipeline: NULL directory");
    if (!unet) unet = "unet";
    model_files f;
    da_status s = check_dir(dir);
    if (s == DA_OK) s = is_weights_file(unet) ? files_at(&f, unet, "UNet") : files_in(&f, dir, unet);
    return s == DA_OK ? load_pipeline(out, dir, &f) : s;
}

da_status da_weights_load_clip(da_clip **out, const char *dir)
{
    *out = NULL;
    model_files f;
    da_clip_config c = da_clip_config_default();
    da_status s = files_in(&f, dir, "clip");
    if (s == DA_OK) s = readable("CLIP config", f.json);
    if (s == DA_OK) s = da_error_named(da_clip_config_load(&c, f.json), f.json);
    if (s == DA_OK && (c.image_size != DA_IMG || c.in_channels != 3))
        s = da_fail(DA_ERR_FORMAT, "%s: image_size %d, in_channels %d, but the pipeline's images are %dx%d RGB",
                    f.json, c.image_size, c.in_channels, DA_IMG, DA_IMG);
    if (s == DA_OK && !(*out = da_clip_create(&c, 0))) s = da_error_named(DA_ERR_INVALID, f.json);
    if (s == DA_OK) s = readable("CLIP weights", f.st);
    if (s == DA_OK) s = da_error_named(da_clip_load(*out, f.st), f.st);
    if (s != DA_OK) {
        da_clip_free(*out);
        *out = NULL;
    }
    return s;
}

da_status da_weights_load_refiner(da_refiner **out, const char *dir, const char *name)
{
    *out = NULL;
    if (!dir || !name) return da_fail(DA_ERR_INVALID, "da_weights_load_refiner: NULL directory or name");
    model_files f;
    da_refiner_config c = da_refiner_config_default();
    da_status s = is_weights_file(name) ? files_at(&f, name, "refiner") : files_in(&f, dir, name);
    if (s == DA_OK) s = readable("refiner config", f.json);
    if (s == DA_OK) s = da_error_named(da_refiner_config_load(&c, f.json), f.json);
    /* the refiner reads and writes the tokenizer's ids */
    if (s == DA_OK && (c.vocab_size != da_vocab_size() || c.max_tokens != DA_MAX_TOKENS))
        s = da_fail(DA_ERR_FORMAT, "%s: a vocabulary of %d ids x %d tokens, but the tokenizer's is %d x %d", f.json,
                    c.vocab_size, c.max_tokens, da_vocab_size(), DA_MAX_TOKENS);
    if (s == DA_OK && !(*out = da_refiner_create(&c, 0))) s = da_error_named(DA_ERR_INVALID, f.json);
    if (s == DA_OK) s = readable("refiner weights", f.st);
    if (s == DA_OK) s = da_error_named(da_refiner_load(*out, f.st), f.st);
    if (s != DA_OK) {
        da_refiner_free(*out);
        *out = NULL;
    }
    return s;
}

/* one metadata value of the refiner NAME's file, copied into out ("" when
 * the file has no such key: written by dalign train promptloop, so a
 * supervised or older refiner has none) */
static da_status refiner_meta(const char *dir, const char *name, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    if (!dir || !name) return da_fail(DA_ERR_INVALID, "refiner metadata: NULL directory or name");
    model_files f;
    da_status s = is_weights_file(name) ? files_at(&f, name, "refiner") : files_in(&f, dir, name);
    da_safetensors *st = NULL;
    if (s == DA_OK) s = readable("refiner weights", f.st);
    if (s == DA_OK) s = da_error_named(da_st_open(f.st, &st), f.st);
    if (s != DA_OK) return s;
    const char *v = da_st_meta_get(st, key);
    if (v) snprintf(out, cap, "%s", v);
    da_st_close(st);
    return DA_OK;
}

da_status da_weights_refiner_keep_meaning(const char *dir, const char *name, int *keep_meaning)
{
    char v[16];
    *keep_meaning = 0;
    da_status s = refiner_meta(dir, name, "refine_keep_meaning", v, sizeof v);
    if (s == DA_OK) *keep_meaning = !strcmp(v, "true");
    return s;
}

da_status da_weights_refiner_window(const char *dir, const char *name, int *first, int *end)
{
    char v[32];
    *first = *end = 0;
    da_status s = refiner_meta(dir, name, "refine_window", v, sizeof v);
    if (s != DA_OK || !v[0]) return s;
    if (da_loop_window_parse(v, first, end) != DA_OK) {
        *first = *end = 0;
        return da_fail(DA_ERR_FORMAT, "refiner %s: metadata refine_window '%s' is not FIRST:END", name, v);
    }
    return DA_OK;
}
