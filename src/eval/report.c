/* The alignment evaluation behind `dalign eval` (report.h). index.html is
 * written by report_html.c; everything else is here. */
#include "eval/report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"

#define PATH_CAP 4096
#define EMBED_CHUNK 32     /* images per CLIP forward: the clip reward's chunk, bounds the tape */
#define TAPE_BYTES ((size_t)1 << 22)

static const char *const REWARD_NAMES[DA_REPORT_N_REWARDS] = {"faithful", "jpeg", "jpeg-neg",
                                                              "colorful", "clip", "pref"};
static const char *const REWARD_UNITS[DA_REPORT_N_REWARDS] = {
    "fraction of clauses", "kB", "minus kB", "Hasler-Suesstrunk M", "CLIPScore, 0-100", "preference-model score"};

const char *da_report_reward_name(int i) { return i >= 0 && i < DA_REPORT_N_REWARDS ? REWARD_NAMES[i] : NULL; }

const char *da_report_reward_unit(int i) { return i >= 0 && i < DA_REPORT_N_REWARDS ? REWARD_UNITS[i] : NULL; }

/* ---- configuration --------------------------------------------------------------- */

da_report_config da_report_config_default(void)
{
    da_report_config c = {
        .prompts = "heldout", .n_prompts = 0, .n_seeds = 4, .batch = 8, .grid_prompts = 8,
        .rewards = DA_REPORT_ALL_REWARDS, .prompt_seed = DA_EVAL_PROMPT_SEED, .image_seed = DA_EVAL_IMAGE_SEED,
        .opts = da_sample_opts_default(), .step_cb = NULL, .step_user = NULL, .progress = 0,
    };
    return c;
}

da_status da_report_config_check(const da_report_config *c)
{
    if (!c) return da_fail(DA_ERR_INVALID, "eval: NULL config");
    if (!c->prompts || !*c->prompts)
        return da_fail(DA_ERR_INVALID, "eval: no prompts given (heldin, heldout or a file)");
    if (c->n_prompts < 0 || c->n_prompts > DA_EVAL_MAX_PROMPTS)
        return da_fail(DA_ERR_INVALID, "eval: prompts %d not in [0, %d] (0: the default count)", c->n_prompts,
                       DA_EVAL_MAX_PROMPTS);
    if (c->n_seeds < 1 || c->n_seeds > DA_EVAL_MAX_SEEDS)
        return da_fail(DA_ERR_INVALID, "eval: seeds %d not in [1, %d]", c->n_seeds, DA_EVAL_MAX_SEEDS);
    if (c->batch < 1 || c->batch > DA_EVAL_MAX_BATCH)
        return da_fail(DA_ERR_INVALID, "eval: batch %d not in [1, %d]", c->batch, DA_EVAL_MAX_BATCH);
    if (c->grid_prompts < 0 || c->grid_prompts > DA_REPORT_MAX_GRID)
        return da_fail(DA_ERR_INVALID, "eval: grid prompts %d not in [0, %d]", c->grid_prompts, DA_REPORT_MAX_GRID);
    if (c->rewards & ~DA_REPORT_ALL_REWARDS)
        return da_fail(DA_ERR_INVALID, "eval: reward mask 0x%x has unknown bits", c->rewards);
    if (c->opts.steps < 1) return da_fail(DA_ERR_INVALID, "eval: steps %d must be >= 1", c->opts.steps);
    if (!isfinite(c->opts.cfg)) return da_fail(DA_ERR_INVALID, "eval: cfg must be a finite number");
    if (!(c->opts.eta >= 0.0f) || !isfinite(c->opts.eta))
        return da_fail(DA_ERR_INVALID, "eval: eta %g must be a finite number >= 0", (double)c->opts.eta);
    if (c->opts.eta != 0.0f && c->opts.sampler != DA_SAMPLER_DDIM)
        return da_fail(DA_ERR_INVALID, "eval: eta %g applies to the ddim sampler only, not %s", (double)c->opts.eta,
                       da_sampler_name(c->opts.sampler));
    return DA_OK;
}

da_status da_report_parse_rewards(const char *list, unsigned *mask)
{
    *mask = 0;
    if (!list) return da_fail(DA_ERR_INVALID, "no reward names given (valid: " DA_REWARD_NAMES ")");
    const char *p = list;
    for (;;) {
        size_t len = strcspn(p, ",");
        int k = 0;
        while (k < DA_REPORT_N_REWARDS && !(strlen(REWARD_NAMES[k]) == len && !strncmp(REWARD_NAMES[k], p, len))) k++;
        if (k == DA_REPORT_N_REWARDS)
            return da_fail(DA_ERR_INVALID, "unknown reward '%.*s' (valid: " DA_REWARD_NAMES ")", (int)len, p);
        *mask |= 1u << k;
        if (!p[len]) return DA_OK;
        p += len + 1;
    }
}

/* ---- prompt files -------------------------------------------------------------------- */

/* the line without its surrounding blanks (and the newline), in place */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    return s;
}

/* a prompt the model can read and the parser understands; errors get FILE:LINE in front */
static da_status check_prompt(const char *path, int line, const char *text)
{
    if (strlen(text) >= DA_CAPTION_MAX)
        return da_fail(DA_ERR_INVALID, "%s:%d: prompt longer than %d bytes", path, line, DA_CAPTION_MAX - 1);
    int ids[DA_MAX_TOKENS];
    uint8_t keep[DA_MAX_TOKENS];
    da_scene spec;
    da_status s = da_prompt_tokens(text, ids, keep);
    if (s == DA_OK) s = da_parse_prompt(text, &spec);
    if (s == DA_OK) return DA_OK;
    char why[1024];   /* da_fail overwrites the message it is given */
    snprintf(why, sizeof why, "%s", da_last_error());
    return da_fail(s, "%s:%d: %s", path, line, why);
}

/* append text as row *n of *texts (rows of DA_CAPTION_MAX bytes), growing it */
static da_status push_prompt(char **texts, int *n, int *cap, const char *text, const char *path)
{
    if (*n >= DA_EVAL_MAX_PROMPTS)
        return da_fail(DA_ERR_RANGE, "%s: more than %d prompts", path, DA_EVAL_MAX_PROMPTS);
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 64;
        char *t = realloc(*texts, (size_t)c * DA_CAPTION_MAX);
        if (!t) return da_fail(DA_ERR_NOMEM, "out of memory reading %s", path);
        *texts = t;
        *cap = c;
    }
    snprintf(*texts + (size_t)*n * DA_CAPTION_MAX, DA_CAPTION_MAX, "%s", text);
    (*n)++;
    return DA_OK;
}

da_status da_report_read_prompts(const char *path, char **texts, int *n)
{
    *texts = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return da_fail(DA_ERR_IO, "cannot open prompt file %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t line_cap = 0;
    int lineno = 0, cap = 0;
    da_status s = DA_OK;
    while (s == DA_OK && getline(&line, &line_cap, f) != -1) {
        char *t = trim(line);
        lineno++;
        if (!*t || *t == '#') continue;
        s = check_prompt(path, lineno, t);
        if (s == DA_OK) s = push_prompt(texts, n, &cap, t, path);
    }
    if (s == DA_OK && ferror(f)) s = da_fail(DA_ERR_IO, "cannot read %s", path);
    if (s == DA_OK && *n == 0)
        s = da_fail(DA_ERR_INVALID, "prompt file %s has no prompts (only blank lines and # comments)", path);
    free(line);
    fclose(f);
    if (s != DA_OK) {
        free(*texts);
        *texts = NULL;
        *n = 0;
    }
    return s;
}

/* ---- models ------------------------------------------------------------------------- */

/* Every loader error must name its file. Whether the loader's message does
 * depends on where it came from, so each kind of call has its own rule
 * (never a search anywhere in the message for the path: a short path matches
 * almost any message, and a message can hold a word that is a file name):
 *   config_err   da_*_config_load: da_cfg_read names the file in each of
 *                its messages; the config check after it (DA_ERR_INVALID)
 *                never does
 *   with_path    da_*_create returning NULL: its message never names it
 *   weights_err  da_*_load of a .safetensors file, after readable() passed:
 *                every message from past the parse starts with "FILE: "
 *                (da_params_load, da_vae_load); the parser's own messages
 *                (a truncated or foreign file) name nothing */
static da_status with_path(da_status s, const char *path)
{
    char why[1024];
    snprintf(why, sizeof why, "%s", da_last_error());
    return da_fail(s, "%s: %s", path, why);
}

static da_status config_err(da_status s, const char *path) { return s == DA_ERR_INVALID ? with_path(s, path) : s; }

static da_status weights_err(da_status s, const char *path)
{
    size_t n = strlen(path);
    const char *m = da_last_error();
    if (s == DA_OK || (!strncmp(m, path, n) && m[n] == ':')) return s;
    return with_path(s, path);
}

/* a weights file that cannot be opened, named before its loader runs */
static da_status readable(const char *path, const char *what)
{
    if (access(path, R_OK) == 0) return DA_OK;
    return da_fail(DA_ERR_IO, "%s %s: %s", what, path, strerror(errno));
}

static da_status join(char *out, const char *dir, const char *name)
{
    if (snprintf(out, PATH_CAP, "%s/%s", dir, name) >= PATH_CAP)
        return da_fail(DA_ERR_INVALID, "path too long: %s/%s", dir, name);
    return DA_OK;
}

static da_status load_text(const char *dir, da_text_encoder **out)
{
    char js[PATH_CAP], st[PATH_CAP];
    da_text_config c = da_text_config_default();
    da_status s = join(js, dir, "text_encoder.json");
    if (s == DA_OK) s = join(st, dir, "text_encoder.safetensors");
    if (s == DA_OK) s = config_err(da_text_config_load(&c, js), js);
    if (s == DA_OK && !(*out = da_text_encoder_create(&c, 0))) s = with_path(DA_ERR_INVALID, js);
    if (s == DA_OK) s = readable(st, "text encoder weights");
    if (s == DA_OK) s = weights_err(da_text_encoder_load(*out, st), st);
    return s;
}

static da_status load_vae(const char *dir, da_vae **out)
{
    char js[PATH_CAP], st[PATH_CAP];
    da_vae_config c = da_vae_config_default();
    da_status s = join(js, dir, "vae.json");
    if (s == DA_OK) s = join(st, dir, "vae.safetensors");
    if (s == DA_OK) s = config_err(da_vae_config_load(&c, js), js);
    if (s == DA_OK && !(*out = da_vae_create(&c, 0))) s = with_path(DA_ERR_INVALID, js);
    if (s == DA_OK) s = readable(st, "VAE weights");
    if (s == DA_OK) s = weights_err(da_vae_load(*out, st), st);
    return s;
}

static int is_unet_path(const char *u)
{
    size_t n = strlen(u), e = strlen(".safetensors");
    return n > e && !strcmp(u + n - e, ".safetensors");
}

/* st = FILE.safetensors, its config FILE.json next to it */
static da_status load_unet_file(const char *st, da_unet **out)
{
    char js[PATH_CAP];
    size_t stem = strlen(st) - strlen(".safetensors");
    if (stem + sizeof ".json" > sizeof js) return da_fail(DA_ERR_INVALID, "path too long: %s", st);
    memcpy(js, st, stem);
    memcpy(js + stem, ".json", sizeof ".json");
    if (access(st, R_OK) != 0) return da_fail(DA_ERR_IO, "UNet file %s: %s", st, strerror(errno));
    if (access(js, R_OK) != 0)
        return da_fail(DA_ERR_IO, "UNet config %s (expected beside %s): %s", js, st, strerror(errno));
    da_unet_config c = da_unet_config_default();
    da_status s = config_err(da_unet_config_load(&c, js), js);
    if (s == DA_OK && !(*out = da_unet_create(&c, 0))) s = with_path(DA_ERR_INVALID, js);
    if (s == DA_OK) s = weights_err(da_unet_load(*out, st), st);   /* readable: checked above */
    return s;
}

/* DIR/scheduler.json when present, else the defaults (as da_pipeline_load) */
static da_status load_noise(const char *dir, da_noise_config *c)
{
    char path[PATH_CAP];
    *c = da_noise_config_default();
    da_status s = join(path, dir, "scheduler.json");
    if (s != DA_OK || access(path, F_OK) != 0) return s;
    return da_noise_config_load(c, path);   /* each of its messages names the file */
}

/* text encoder and VAE of dir with a UNet from elsewhere: m owns all three */
static da_status load_pipeline_unet_file(da_report_models *m, const char *dir, const char *unet)
{
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return da_fail(DA_ERR_IO, "weights directory '%s' not found (use --weights DIR or set DALIGN_WEIGHTS)", dir);
    da_noise_config noise;
    da_status s = load_unet_file(unet, &m->unet);
    if (s == DA_OK) s = load_text(dir, &m->text);
    if (s == DA_OK) s = load_vae(dir, &m->vae);
    if (s == DA_OK) s = load_noise(dir, &noise);
    if (s == DA_OK) s = da_pipeline_create(&m->pipe, m->text, m->vae, m->unet, &noise);
    return s;
}

static da_status load_clip(const char *dir, da_clip **out)
{
    char js[PATH_CAP], st[PATH_CAP];
    da_clip_config c;
    da_status s = join(js, dir, "clip.json");
    if (s == DA_OK) s = join(st, dir, "clip.safetensors");
    if (s == DA_OK) s = config_err(da_clip_config_load(&c, js), js);
    if (s != DA_OK) return s;
    if (c.image_size != DA_IMG || c.in_channels != 3)
        return da_fail(DA_ERR_FORMAT, "%s: image_size %d, in_channels %d, but the evaluated images are %dx%d RGB", js,
                       c.image_size, c.in_channels, DA_IMG, DA_IMG);
    if (!(*out = da_clip_create(&c, 0))) return with_path(DA_ERR_INVALID, js);
    s = readable(st, "CLIP weights");
    return s == DA_OK ? weights_err(da_clip_load(*out, st), st) : s;
}

da_status da_report_models_load(da_report_models *m, const char *weights_dir, const char *unet, unsigned rewards)
{
    memset(m, 0, sizeof *m);
    const char *dir = da_weights_dir(weights_dir);
    if (!unet) unet = "unet";
    da_status s = is_unet_path(unet) ? load_pipeline_unet_file(m, dir, unet) : da_pipeline_load(&m->pipe, dir, unet);
    if (s == DA_OK) s = load_clip(dir, &m->clip);
    for (int i = 0; i < DA_REPORT_N_REWARDS && s == DA_OK; i++)
        if (rewards & (1u << i)) s = da_reward_create(&m->reward[i], REWARD_NAMES[i], dir);
    return s;
}

void da_report_models_free(da_report_models *m)
{
    if (!m) return;
    da_pipeline_free(m->pipe);   /* frees its models only when it loaded them itself */
    da_text_encoder_free(m->text);
    da_vae_free(m->vae);
    da_unet_free(m->unet);
    da_clip_free(m->clip);
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) da_reward_free(m->reward[i]);
    memset(m, 0, sizeof *m);
}

/* ---- prompts and buffers ------------------------------------------------------------- */

static da_status split_prompts(da_report_result *r, const da_report_config *c, da_split split)
{
    int n = c->n_prompts ? c->n_prompts : DA_REPORT_SPLIT_PROMPTS;
    r->prompts = calloc((size_t)n, DA_CAPTION_MAX);
    if (!r->prompts) return da_fail(DA_ERR_NOMEM, "eval: out of memory");
    r->n_prompts = n;
    r->split = split;
    return da_eval_prompts(c->prompt_seed, split, n, r->prompts, NULL);
}

static da_status file_prompts(da_report_result *r, const da_report_config *c)
{
    da_status s = da_report_read_prompts(c->prompts, &r->prompts, &r->n_prompts);
    if (s != DA_OK) return s;
    if (c->n_prompts > r->n_prompts)
        return da_fail(DA_ERR_INVALID, "prompt file %s has %d prompts, fewer than the %d asked for", c->prompts,
                       r->n_prompts, c->n_prompts);
    if (c->n_prompts) r->n_prompts = c->n_prompts;   /* the first n */
    r->split = DA_SPLIT_TRAIN;
    return DA_OK;
}

static da_status alloc_buffers(da_report_result *r, const da_report_config *c)
{
    size_t P = (size_t)r->n_prompts, K = (size_t)c->n_seeds;
    r->n_seeds = c->n_seeds;
    r->grid_prompts = c->grid_prompts < r->n_prompts ? c->grid_prompts : r->n_prompts;
    r->grid_seeds = c->n_seeds < DA_REPORT_GRID_SEEDS ? c->n_seeds : DA_REPORT_GRID_SEEDS;
    r->n_objects = calloc(P, sizeof *r->n_objects);
    r->scores = calloc(DA_REPORT_N_REWARDS * P * K, sizeof *r->scores);
    r->faith = calloc(P * K, sizeof *r->faith);
    r->utility = calloc(P * K, sizeof *r->utility);
    r->n_detected = calloc(P * K, sizeof *r->n_detected);
    r->n_type = calloc(P * DA_N_CLAUSE_TYPES, sizeof *r->n_type);
    r->sat_type = calloc(P * DA_N_CLAUSE_TYPES, sizeof *r->sat_type);
    r->grid = calloc((size_t)r->grid_prompts * r->grid_seeds * DA_IMG_FLOATS + 1, sizeof *r->grid);
    if (K >= 2) r->diversity = calloc(P, sizeof *r->diversity);
    if (!r->n_objects || !r->scores || !r->faith || !r->utility || !r->n_detected || !r->n_type || !r->sat_type ||
        !r->grid || (K >= 2 && !r->diversity))
        return da_fail(DA_ERR_NOMEM, "eval: out of memory for %zu prompts x %zu seeds", P, K);
    return DA_OK;
}

da_status da_report_init(da_report_result *r, const da_report_config *c)
{
    memset(r, 0, sizeof *r);
    da_status s = da_report_config_check(c);
    if (s != DA_OK) return s;
    if (!strcmp(c->prompts, "heldin")) s = split_prompts(r, c, DA_SPLIT_TRAIN);
    else if (!strcmp(c->prompts, "heldout")) s = split_prompts(r, c, DA_SPLIT_HELDOUT);
    else s = file_prompts(r, c);
    if (s == DA_OK) s = alloc_buffers(r, c);
    for (int p = 0; p < r->n_prompts && s == DA_OK; p++) {
        da_scene spec;
        s = da_parse_prompt(r->prompts + (size_t)p * DA_CAPTION_MAX, &spec);
        r->n_objects[p] = spec.n_objects;
    }
    return s;
}

void da_report_result_free(da_report_result *r)
{
    if (!r) return;
    free(r->prompts);
    free(r->n_objects);
    free(r->scores);
    free(r->faith);
    free(r->utility);
    free(r->n_detected);
    free(r->n_type);
    free(r->sat_type);
    free(r->emb);
    free(r->diversity);
    free(r->grid);
    memset(r, 0, sizeof *r);
}

/* ---- embeddings and diversity ------------------------------------------------------------ */

da_status da_report_embed(const da_clip *clip, const float *images, int n, float *emb)
{
    if (!clip || !images || !emb || n < 0) return da_fail(DA_ERR_INVALID, "da_report_embed: bad argument");
    if (clip->cfg.image_size != DA_IMG || clip->cfg.in_channels != 3)
        return da_fail(DA_ERR_INVALID, "CLIP image tower reads %dx%d images with %d channels, not %dx%d RGB",
                       clip->cfg.image_size, clip->cfg.image_size, clip->cfg.in_channels, DA_IMG, DA_IMG);
    int E = clip->cfg.embed_dim;
    da_tape t;
    da_tape_init(&t, TAPE_BYTES);
    da_tape_set_grad(&t, 0);
    da_status s = DA_OK;
    for (int i0 = 0; i0 < n && s == DA_OK; i0 += EMBED_CHUNK) {
        int B = n - i0 < EMBED_CHUNK ? n - i0 : EMBED_CHUNK;
        da_tape_reset(&t);
        int shape[4] = {B, 3, DA_IMG, DA_IMG};
        da_tensor *x = da_tensor_new(&t, 4, shape, 0);   /* (B, 3, 32, 32) */
        const float *img = images + (size_t)i0 * DA_IMG_FLOATS;
        for (size_t i = 0; i < x->size; i++) x->data[i] = 2.0f * img[i] - 1.0f;   /* CLIP reads [-1, 1] */
        da_tensor *e = da_clip_image_forward(&t, clip, x);   /* (B, E) */
        if (!e) s = DA_ERR_INVALID;
        else memcpy(emb + (size_t)i0 * E, e->data, (size_t)B * E * sizeof(float));
    }
    da_tape_free(&t);
    return s;
}

double da_report_diversity(const float *emb, int K, int E)
{
    if (K < 2) return 0.0;
    double sum = 0.0;
    for (int i = 0; i < K; i++) {
        const float *a = emb + (size_t)i * E;
        for (int j = i + 1; j < K; j++) {
            const float *b = emb + (size_t)j * E;
            double ab = 0.0, aa = 0.0, bb = 0.0;
            for (int e = 0; e < E; e++) {
                ab += (double)a[e] * b[e];
                aa += (double)a[e] * a[e];
                bb += (double)b[e] * b[e];
            }
            /* sqrt(aa * bb), not sqrt(aa) sqrt(bb): equal rows then give cos = 1 exactly */
            double cos = aa > 0.0 && bb > 0.0 ? ab / sqrt(aa * bb) : 0.0;
            cos = cos > 1.0 ? 1.0 : cos < -1.0 ? -1.0 : cos;
            sum += 1.0 - cos;
        }
    }
    return sum / (0.5 * K * (K - 1));
}

/* ---- generation and scoring ------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct chunk {
    const char *prompts[DA_EVAL_MAX_BATCH];
    uint64_t seeds[DA_EVAL_MAX_BATCH];
    float *images;   /* (batch, 3, 32, 32) */
} chunk;

/* faithfulness clauses, detections and the rater's utility of images [j0, j0 + B) */
static da_status judge(da_report_result *r, const chunk *ch, int j0, int B)
{
    da_rater_config rc = da_rater_config_default();
    for (int b = 0; b < B; b++) {
        int j = j0 + b, p = j / r->n_seeds;
        const float *img = ch->images + (size_t)b * DA_IMG_FLOATS;
        da_faith f;
        da_rater_terms t;
        da_status s = da_faithfulness(img, ch->prompts[b], &f, &r->faith[j]);
        if (s == DA_OK) s = da_rater_utility(&rc, img, ch->prompts[b], &t);
        if (s != DA_OK) return s;
        r->utility[j] = t.utility;
        r->n_detected[j] = f.n_detected;
        for (int k = 0; k < DA_N_CLAUSE_TYPES; k++) {
            r->n_type[p * DA_N_CLAUSE_TYPES + k] += f.n_type[k];
            r->sat_type[p * DA_N_CLAUSE_TYPES + k] += f.sat_type[k];
        }
    }
    return DA_OK;
}

/* images [j0, j0 + B) (image j = prompt j / K, seed k = j % K): generate, score, embed */
static da_status run_chunk(da_report_result *r, const da_report_models *m, const da_report_config *c, chunk *ch,
                           int j0, int B)
{
    int K = r->n_seeds;
    size_t PK = (size_t)r->n_prompts * K;
    for (int b = 0; b < B; b++) {
        int p = (j0 + b) / K, k = (j0 + b) % K;
        ch->prompts[b] = r->prompts + (size_t)p * DA_CAPTION_MAX;
        ch->seeds[b] = da_eval_image_seed(c->image_seed, r->split, p, k);
    }
    da_status s = da_pipeline_generate(m->pipe, &c->opts, ch->prompts, NULL, ch->seeds, B, c->step_cb, c->step_user,
                                       ch->images, NULL);
    /* rewards read the user's prompt, whatever a step callback conditioned on */
    for (int i = 0; i < DA_REPORT_N_REWARDS && s == DA_OK; i++)
        if (r->rewards & (1u << i))
            s = da_reward_score(m->reward[i], ch->images, ch->prompts, B, r->scores + i * PK + j0);
    if (s == DA_OK) s = judge(r, ch, j0, B);
    if (s == DA_OK) s = da_report_embed(m->clip, ch->images, B, r->emb + (size_t)j0 * r->embed_dim);
    for (int b = 0; b < B && s == DA_OK; b++) {
        int p = (j0 + b) / K, k = (j0 + b) % K;
        if (p < r->grid_prompts && k < r->grid_seeds)
            memcpy(r->grid + ((size_t)p * r->grid_seeds + k) * DA_IMG_FLOATS, ch->images + (size_t)b * DA_IMG_FLOATS,
                   DA_IMG_FLOATS * sizeof(float));
    }
    return s;
}

/* after each chunk: redrawn on a terminal, else about ten lines in all;
 * faith_sum is the faithfulness summed over the images done */
static void progress(const da_report_config *c, double faith_sum, int done, int total, double t0, int *next)
{
    int tty = isatty(2), last = done == total;
    if (!c->progress || (!tty && !last && done < *next)) return;
    *next = done + (total / 10 > 0 ? total / 10 : 1);
    double el = now_s() - t0, eta = el * (total - done) / done;
    fprintf(stderr, "%seval: images %d/%d  faithfulness %.3f  %.0f s  ETA %d:%02d%s", tty ? "\r" : "", done, total,
            faith_sum / done, el, (int)eta / 60, (int)eta % 60, tty && !last ? "" : "\n");
}

/* ---- statistics ----------------------------------------------------------------------------- */

/* mean + interval over prompts of a per-image value x (P, K) */
static da_eval_stat image_stat(const float *x, int P, int K, double *s, double *n)
{
    for (int p = 0; p < P; p++) {
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += x[(size_t)p * K + k];
        s[p] = sum;
        n[p] = K;
    }
    return da_eval_cluster_mean(s, n, P);
}

static void summarise(da_report_result *r, double *s, double *n)
{
    int P = r->n_prompts, K = r->n_seeds;
    size_t PK = (size_t)P * K;
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++)
        if (r->rewards & (1u << i)) r->reward[i] = image_stat(r->scores + i * PK, P, K, s, n);
    r->rater = image_stat(r->utility, P, K, s, n);
    r->faith_all = image_stat(r->faith, P, K, s, n);
    double *exact = s, *extra = s + P, *seeds = n;   /* s and n hold 2P doubles each */
    for (int p = 0; p < P; p++) {
        exact[p] = extra[p] = 0.0;
        seeds[p] = K;
        for (int k = 0; k < K; k++) {
            exact[p] += r->faith[(size_t)p * K + k] == 1.0f;                /* every clause met */
            extra[p] += r->n_detected[(size_t)p * K + k] > r->n_objects[p];  /* more objects than named */
        }
    }
    r->exact = da_eval_cluster_mean(exact, seeds, P);
    r->extra = da_eval_cluster_mean(extra, seeds, P);
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        int k = 0;   /* a prompt without a clause of this type is no cluster of it */
        for (int p = 0; p < P; p++) {
            int nt = r->n_type[p * DA_N_CLAUSE_TYPES + t];
            if (!nt) continue;
            s[k] = r->sat_type[p * DA_N_CLAUSE_TYPES + t];
            n[k++] = nt;
        }
        r->type[t] = da_eval_cluster_mean(s, n, k);
    }
    if (r->diversity) {
        for (int p = 0; p < P; p++) n[p] = 1.0;
        r->div = da_eval_cluster_mean(r->diversity, n, P);
    }
}

da_status da_report_run(da_report_result *r, const da_report_models *m, const da_report_config *c)
{
    if (!r || !m || !c || !r->prompts) return da_fail(DA_ERR_INVALID, "da_report_run: call da_report_init first");
    if (!m->pipe || !m->clip) return da_fail(DA_ERR_INVALID, "da_report_run: models not loaded");
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++)
        if ((c->rewards & (1u << i)) && !m->reward[i])
            return da_fail(DA_ERR_INVALID, "da_report_run: reward %s selected but not loaded", REWARD_NAMES[i]);
    double t0 = now_s();
    int P = r->n_prompts, K = r->n_seeds, total = P * K, next = 0;
    r->rewards = c->rewards;
    r->embed_dim = m->clip->cfg.embed_dim;
    /* clause counts accumulate over seeds: start from zero, also on a second run */
    memset(r->n_type, 0, (size_t)P * DA_N_CLAUSE_TYPES * sizeof *r->n_type);
    memset(r->sat_type, 0, (size_t)P * DA_N_CLAUSE_TYPES * sizeof *r->sat_type);
    free(r->emb);
    r->emb = calloc((size_t)total * r->embed_dim, sizeof *r->emb);
    chunk *ch = calloc(1, sizeof *ch);
    float *images = malloc((size_t)c->batch * DA_IMG_FLOATS * sizeof(float));
    double *s = malloc(2 * (size_t)P * sizeof *s), *n = malloc(2 * (size_t)P * sizeof *n);
    da_status st = r->emb && ch && images && s && n ? DA_OK : da_fail(DA_ERR_NOMEM, "eval: out of memory");
    if (ch) ch->images = images;
    double faith_sum = 0.0;
    for (int j0 = 0; j0 < total && st == DA_OK; j0 += c->batch) {
        int B = total - j0 < c->batch ? total - j0 : c->batch;
        st = run_chunk(r, m, c, ch, j0, B);
        for (int b = 0; b < B && st == DA_OK; b++) faith_sum += r->faith[j0 + b];
        if (st == DA_OK) progress(c, faith_sum, j0 + B, total, t0, &next);
    }
    for (int p = 0; p < P && st == DA_OK && r->diversity; p++)
        r->diversity[p] = da_report_diversity(r->emb + (size_t)p * K * r->embed_dim, K, r->embed_dim);
    if (st == DA_OK) summarise(r, s, n);
    free(ch);
    free(images);
    free(s);
    free(n);
    r->seconds = now_s() - t0;
    return st;
}

/* ---- output files ----------------------------------------------------------------------------- */

typedef struct out_ctx {
    const da_report_config *c;
    const da_report_result *r;
    const char *weights, *unet;
} out_ctx;

/* A number of metrics.json: "%.9g", so that a diversity of 4e-7 is not
 * printed as 0 (and cfg, eta read back as the same float); null when not
 * finite (JSON has no inf or NaN, and `dalign compare` skips nulls). */
static void json_num(FILE *f, double x)
{
    if (isfinite(x)) fprintf(f, "%.9g", x);
    else fputs("null", f);
}

/* "mean": m, "ci95": [lo, hi], "n": n  (null mean and interval over nothing) */
static void json_stat_body(FILE *f, const da_eval_stat *s)
{
    if (s->n == 0) {
        fprintf(f, "\"mean\": null, \"ci95\": null, \"n\": 0");
        return;
    }
    fputs("\"mean\": ", f);
    json_num(f, s->mean);
    fputs(", \"ci95\": [", f);
    json_num(f, s->mean - s->half);
    fputs(", ", f);
    json_num(f, s->mean + s->half);
    fprintf(f, "], \"n\": %ld", s->n);
}

static void json_rewards(FILE *f, const da_report_result *r)
{
    fprintf(f, "  \"rewards\": {");
    const char *sep = "\n";
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        if (!(r->rewards & (1u << i))) continue;
        fprintf(f, "%s    \"%s\": {", sep, REWARD_NAMES[i]);
        json_stat_body(f, &r->reward[i]);
        fprintf(f, ", \"unit\": \"%s\"}", REWARD_UNITS[i]);
        sep = ",\n";
    }
    fprintf(f, "\n  },\n");
}

static void json_faithfulness(FILE *f, const da_report_result *r)
{
    fprintf(f, "  \"faithfulness\": {");
    json_stat_body(f, &r->faith_all);
    fprintf(f, ",\n    \"exact\": {");
    json_stat_body(f, &r->exact);
    fprintf(f, "},\n    \"extra_objects\": {");
    json_stat_body(f, &r->extra);
    fprintf(f, "},\n    \"clauses\": {\n");
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        fprintf(f, "      \"%s\": {", da_clause_type_name(t));
        json_stat_body(f, &r->type[t]);
        fprintf(f, "}%s\n", t + 1 < DA_N_CLAUSE_TYPES ? "," : "");
    }
    fprintf(f, "    }\n  },\n");
}

static void json_diversity(FILE *f, const da_report_result *r)
{
    fprintf(f, "  \"diversity\": {\"measure\": \"mean over seed pairs of 1 - cos of CLIP image embeddings\", ");
    if (r->diversity) {
        json_stat_body(f, &r->div);
        fprintf(f, ", \"pairs_per_prompt\": %d},\n", r->n_seeds * (r->n_seeds - 1) / 2);
    } else {
        fprintf(f, "\"mean\": null, \"ci95\": null, \"n\": 0, \"note\": \"one seed per prompt: no pairs, so no "
                   "diversity (not 0)\"},\n");
    }
}

/* Only what the inputs determine goes in: no timings, no thread count, so
 * the same inputs give the same bytes. */
static void write_json(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    const da_report_config *c = o->c;
    const da_report_result *r = o->r;
    da_rater_config rc = da_rater_config_default();
    fprintf(f, "{\n  \"format\": \"%s\",\n  \"prompts\": ", DA_REPORT_FORMAT);
    da_json_write_str(f, c->prompts);
    fprintf(f, ",\n  \"n_prompts\": %d,\n  \"seeds\": %d,\n  \"images\": %d,\n  \"sampler\": \"%s\",\n"
               "  \"steps\": %d,\n  \"cfg\": ",
            r->n_prompts, r->n_seeds, r->n_prompts * r->n_seeds, da_sampler_name(c->opts.sampler), c->opts.steps);
    json_num(f, c->opts.cfg);
    fputs(",\n  \"eta\": ", f);
    json_num(f, c->opts.eta);
    fprintf(f, ",\n  \"batch\": %d,\n  \"prompt_seed\": %llu,\n  \"image_seed\": %llu,\n  \"weights\": ", c->batch,
            (unsigned long long)c->prompt_seed, (unsigned long long)c->image_seed);
    da_json_write_str(f, o->weights);
    fprintf(f, ",\n  \"unet\": ");
    da_json_write_str(f, o->unet);
    fprintf(f, ",\n  \"gemm\": \"%s\",\n", da_gemm_backend());
    json_rewards(f, r);
    json_faithfulness(f, r);
    json_diversity(f, r);
    fprintf(f, "  \"rater\": {\"role\": \"held-back judge: the synthetic rater's noiseless utility "
               "(docs/rater.md); never an optimisation target\", ");
    json_stat_body(f, &r->rater);
    fputs(", \"max\": ", f);
    json_num(f, (double)(rc.w_faith + rc.w_size + rc.w_centre + rc.w_contrast));
    fputs("}\n}\n", f);
}

/* one line per image: its prompt, seed and every score */
static void write_tsv(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    const da_report_result *r = o->r;
    size_t PK = (size_t)r->n_prompts * r->n_seeds;
    fprintf(f, "prompt_index\tk\tseed\tprompt");
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++)
        if (r->rewards & (1u << i)) fprintf(f, "\t%s", REWARD_NAMES[i]);
    fprintf(f, "\trater\tobjects\n");
    for (size_t j = 0; j < PK; j++) {
        int p = (int)(j / r->n_seeds), k = (int)(j % r->n_seeds);
        fprintf(f, "%d\t%d\t%llu\t", p, k,
                (unsigned long long)da_eval_image_seed(o->c->image_seed, r->split, p, k));
        for (const char *t = r->prompts + (size_t)p * DA_CAPTION_MAX; *t; t++) fputc(*t == '\t' ? ' ' : *t, f);
        for (int i = 0; i < DA_REPORT_N_REWARDS; i++)
            if (r->rewards & (1u << i)) fprintf(f, "\t%.6g", (double)r->scores[i * PK + j]);
        fprintf(f, "\t%.6g\t%d\n", (double)r->utility[j], r->n_detected[j]);
    }
}

static void write_html(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    da_report_html(f, o->c, o->r, o->weights, o->unet);
}

da_status da_report_write(const char *dir, const da_report_config *c, const da_report_result *r,
                          const char *weights, const char *unet)
{
    if (!dir || !c || !r || !r->prompts) return da_fail(DA_ERR_INVALID, "da_report_write: bad argument");
    da_status s = da_make_dirs(dir);
    out_ctx o = {c, r, weights ? weights : "", unet ? unet : "unet"};
    if (s == DA_OK && r->grid_prompts > 0) {
        char path[PATH_CAP];
        if (snprintf(path, sizeof path, "%s/grid.png", dir) >= (int)sizeof path)
            return da_fail(DA_ERR_INVALID, "path too long: %s/grid.png", dir);
        s = da_png_save_images(path, r->grid, r->grid_prompts * r->grid_seeds, r->grid_seeds, DA_REPORT_GRID_SCALE);
    }
    if (s == DA_OK) s = da_write_with(dir, "images.tsv", write_tsv, &o);
    if (s == DA_OK) s = da_write_with(dir, "metrics.json", write_json, &o);
    if (s == DA_OK) s = da_write_with(dir, "index.html", write_html, &o);
    return s;
}

/* ---- the table on stdout -------------------------------------------------------------------- */

static void table_row(FILE *f, const char *name, const da_eval_stat *s)
{
    if (s->n == 0) fprintf(f, "%-34s %10s  %-24s %7d\n", name, "-", "", 0);
    else fprintf(f, "%-34s %10.4f  [%9.4f, %9.4f]  %7ld\n", name, s->mean, s->mean - s->half, s->mean + s->half, s->n);
}

void da_report_table(FILE *f, const da_report_result *r)
{
    char name[96];
    fprintf(f, "%-34s %10s  %-24s %7s\n", "metric", "mean", "95% interval", "n");
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        if (!(r->rewards & (1u << i))) continue;
        snprintf(name, sizeof name, "%s (%s)", REWARD_NAMES[i], REWARD_UNITS[i]);
        table_row(f, name, &r->reward[i]);
    }
    if (!(r->rewards & (1u << DA_REPORT_FAITHFUL))) table_row(f, "faithfulness: all clauses", &r->faith_all);
    table_row(f, "faithfulness: every clause met", &r->exact);
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        snprintf(name, sizeof name, "faithfulness: %s clauses", da_clause_type_name(t));
        table_row(f, name, &r->type[t]);
    }
    table_row(f, "images with extra objects", &r->extra);
    if (r->diversity) table_row(f, "diversity (1 - cos, CLIP)", &r->div);
    else fprintf(f, "%-34s %10s  (one seed per prompt: no pairs)\n", "diversity (1 - cos, CLIP)", "null");
    table_row(f, "rater utility (held-back judge)", &r->rater);
}
