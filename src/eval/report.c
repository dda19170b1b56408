/* The alignment evaluation behind `dalign eval` (report.h): configuration,
 * prompts, models, generation and scoring, statistics. Its files and the
 * table are written by report_write.c, index.html by report_html.c. */
#include "dalign/eval.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "eval/chunks.h"
#include "pipeline/weights.h"

#define EMBED_CHUNK 32     /* images per CLIP forward: the clip reward's chunk, bounds the tape */
#define TAPE_BYTES ((size_t)1 << 22)

static const char *const REWARD_NAMES[DA_REPORT_N_REWARDS] = {"faithful", "jpeg", "jpeg-neg", "colorful",
                                                              "clip", "pref", "outline"};
static const char *const REWARD_UNITS[DA_REPORT_N_REWARDS] = {
    "fraction of clauses", "kB", "minus kB", "Hasler-Suesstrunk M", "CLIPScore, 0-100", "preference-model score",
    "outline-style score, 0-1"};

const char *da_report_reward_name(int i) { return i >= 0 && i < DA_REPORT_N_REWARDS ? REWARD_NAMES[i] : NULL; }

const char *da_report_reward_unit(int i) { return i >= 0 && i < DA_REPORT_N_REWARDS ? REWARD_UNITS[i] : NULL; }

/* ---- configuration --------------------------------------------------------------- */

da_report_config da_report_config_default(void)
{
    da_report_config c = {
        .prompts = "heldout", .n_prompts = 0, .n_seeds = 4, .batch = 8, .grid_prompts = 8,
        .rewards = DA_REPORT_ALL_REWARDS, .prompt_seed = DA_EVAL_PROMPT_SEED, .image_seed = DA_EVAL_IMAGE_SEED,
        .opts = da_sample_opts_default(), .step_cb = NULL, .step_user = NULL, .refiner = NULL,
        .loop = da_loop_opts_default(), .refiner_name = NULL, .progress = 0,
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
    if (c->refiner && c->step_cb) return da_fail(DA_ERR_INVALID, "eval: a refiner and a step callback do not go together");
    if (c->refiner && da_loop_opts_check(&c->loop, c->opts.steps) != DA_OK) {
        char why[512];   /* da_fail writes the buffer da_last_error reads */
        snprintf(why, sizeof why, "%s", da_last_error());
        return da_fail(DA_ERR_INVALID, "eval: %s", why);
    }
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

da_status da_report_models_load(da_report_models *m, const char *weights_dir, const char *unet, unsigned rewards)
{
    memset(m, 0, sizeof *m);
    const char *dir = da_weights_dir(weights_dir);
    da_status s = da_weights_load_pipeline(&m->pipe, dir, unet);
    if (s == DA_OK) s = da_weights_load_clip(&m->clip, dir);
    for (int i = 0; i < DA_REPORT_N_REWARDS && s == DA_OK; i++)
        if (rewards & (1u << i)) s = da_reward_create(&m->reward[i], REWARD_NAMES[i], dir);
    return s;
}

void da_report_models_free(da_report_models *m)
{
    if (!m) return;
    da_pipeline_free(m->pipe);   /* and its models */
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
    r->page_seeds = r->grid_seeds;
    r->page_prompts = r->n_prompts;
    if ((long)r->page_prompts * r->page_seeds > DA_REPORT_PAGE_IMAGES)
        r->page_prompts = DA_REPORT_PAGE_IMAGES / r->page_seeds;
    size_t page = (size_t)r->page_prompts * r->page_seeds;
    r->rgb = malloc(page * DA_IMG * DA_IMG * 3 + 1);
    r->n_clauses = calloc(page + 1, sizeof *r->n_clauses);
    r->clauses = calloc(page * DA_MAX_CLAUSES + 1, sizeof *r->clauses);
    if (K >= 2) r->diversity = calloc(P, sizeof *r->diversity);
    if (!r->n_objects || !r->scores || !r->faith || !r->utility || !r->n_detected || !r->n_type || !r->sat_type ||
        !r->grid || (K >= 2 && !r->diversity) || !r->rgb || !r->n_clauses || !r->clauses)
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
    free(r->rgb);
    free(r->n_clauses);
    free(r->clauses);
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

/* the evaluation's images as the chunk stream's scorer sees them */
typedef struct report_run {
    da_report_result *r;
    const da_report_models *m;
    long done;                /* images scored */
    double faith_sum;         /* their faithfulness, summed in image order */
} report_run;

/* faithfulness clauses, detections and the rater's utility of a chunk's images */
static da_status judge(da_report_result *r, const da_chunk *ch)
{
    da_rater_config rc = da_rater_config_default();
    for (int b = 0; b < ch->n; b++) {
        int j = (int)ch->first + b, p = j / r->n_seeds;
        const float *img = ch->images + (size_t)b * DA_IMG_FLOATS;
        da_faith f;
        da_rater_terms t;
        da_status s = da_faithfulness(img, ch->prompts[b], &f, &r->faith[j]);
        if (s == DA_OK) s = da_rater_utility(&rc, img, ch->prompts[b], &t);
        if (s != DA_OK) return s;
        r->utility[j] = t.utility;
        r->n_detected[j] = f.n_detected;
        int seed = j % r->n_seeds;
        if (p < r->page_prompts && seed < r->page_seeds) {   /* what the page shows of it */
            size_t q = (size_t)p * r->page_seeds + seed;
            da_image_to_rgb8(img, DA_IMG, DA_IMG, r->rgb + q * DA_IMG * DA_IMG * 3);
            r->n_clauses[q] = f.n_clauses;
            memcpy(r->clauses + q * DA_MAX_CLAUSES, f.clause, sizeof f.clause);
        }
        for (int k = 0; k < DA_N_CLAUSE_TYPES; k++) {
            r->n_type[p * DA_N_CLAUSE_TYPES + k] += f.n_type[k];
            r->sat_type[p * DA_N_CLAUSE_TYPES + k] += f.sat_type[k];
        }
    }
    return DA_OK;
}

/* the images of the first prompts and seeds into the grid */
static void keep_for_grid(da_report_result *r, const da_chunk *ch)
{
    for (int b = 0; b < ch->n; b++) {
        int p = (int)(ch->first + b) / r->n_seeds, k = (int)(ch->first + b) % r->n_seeds;
        if (p < r->grid_prompts && k < r->grid_seeds)
            memcpy(r->grid + ((size_t)p * r->grid_seeds + k) * DA_IMG_FLOATS, ch->images + (size_t)b * DA_IMG_FLOATS,
                   DA_IMG_FLOATS * sizeof(float));
    }
}

/* every selected reward, the judge and the CLIP embedding of a chunk (image
 * j = prompt j / K, seed k = j % K) */
static da_status score_chunk(void *user, const da_chunk *ch, int *stop)
{
    (void)stop;
    report_run *rr = user;
    da_report_result *r = rr->r;
    size_t PK = (size_t)r->n_prompts * r->n_seeds, j0 = (size_t)ch->first;
    da_status s = DA_OK;
    /* rewards read the user's prompt, whatever a step callback conditioned on */
    for (int i = 0; i < DA_REPORT_N_REWARDS && s == DA_OK; i++)
        if (r->rewards & (1u << i))
            s = da_reward_score(rr->m->reward[i], ch->images, ch->prompts, ch->n, r->scores + i * PK + j0);
    if (s == DA_OK) s = judge(r, ch);
    if (s == DA_OK) s = da_report_embed(rr->m->clip, ch->images, ch->n, r->emb + j0 * r->embed_dim);
    if (s != DA_OK) return s;
    keep_for_grid(r, ch);
    for (int b = 0; b < ch->n; b++) rr->faith_sum += r->faith[j0 + b];
    rr->done = ch->first + ch->n;
    return DA_OK;
}

static void report_progress(void *user, da_ticker *t)
{
    const report_run *rr = user;
    da_ticker_faith(t, "eval:", rr->done, (long)rr->r->n_prompts * rr->r->n_seeds, rr->faith_sum);
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

/* the same for a per-image value in [0, 1]: its interval stays inside (Wilson) */
static da_eval_stat image_share(const float *x, int P, int K, double *s, double *n)
{
    image_stat(x, P, K, s, n);
    return da_eval_cluster_share(s, n, P);
}

/* the share of images in the outline style (outline >= DA_REPORT_STYLE_THRESHOLD),
 * clustered by prompt; n = 0 when the outline reward was not scored */
static da_eval_stat style_share(const da_report_result *r, double *s, double *n)
{
    da_eval_stat none = {0.0, 0.0, 0, 0.0, 0.0};
    if (!(r->rewards & (1u << DA_REPORT_OUTLINE))) return none;
    int P = r->n_prompts, K = r->n_seeds;
    const float *outline = r->scores + (size_t)DA_REPORT_OUTLINE * P * K;   /* (P, K) */
    for (int p = 0; p < P; p++) {
        s[p] = 0.0;
        n[p] = K;
        for (int k = 0; k < K; k++) s[p] += outline[(size_t)p * K + k] >= DA_REPORT_STYLE_THRESHOLD;
    }
    return da_eval_cluster_share(s, n, P);
}

static void summarise(da_report_result *r, double *s, double *n)
{
    int P = r->n_prompts, K = r->n_seeds;
    size_t PK = (size_t)P * K;
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        if (!(r->rewards & (1u << i))) continue;
        int bounded = i == DA_REPORT_FAITHFUL || i == DA_REPORT_OUTLINE;   /* in [0, 1]: shares */
        const float *x = r->scores + i * PK;
        r->reward[i] = bounded ? image_share(x, P, K, s, n) : image_stat(x, P, K, s, n);
    }
    r->style_share = style_share(r, s, n);
    r->rater = image_stat(r->utility, P, K, s, n);
    r->faith_all = image_share(r->faith, P, K, s, n);
    double *exact = s, *extra = s + P, *seeds = n;   /* s and n hold 2P doubles each */
    for (int p = 0; p < P; p++) {
        exact[p] = extra[p] = 0.0;
        seeds[p] = K;
        for (int k = 0; k < K; k++) {
            exact[p] += r->faith[(size_t)p * K + k] == 1.0f;                /* every clause met */
            extra[p] += r->n_detected[(size_t)p * K + k] > r->n_objects[p];  /* more objects than named */
        }
    }
    r->exact = da_eval_cluster_share(exact, seeds, P);
    r->extra = da_eval_cluster_share(extra, seeds, P);
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        int k = 0;   /* a prompt without a clause of this type is no cluster of it */
        for (int p = 0; p < P; p++) {
            int nt = r->n_type[p * DA_N_CLAUSE_TYPES + t];
            if (!nt) continue;
            s[k] = r->sat_type[p * DA_N_CLAUSE_TYPES + t];
            n[k++] = nt;
        }
        r->type[t] = da_eval_cluster_share(s, n, k);
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
    double t0 = da_now_s();
    int P = r->n_prompts, K = r->n_seeds, total = P * K;
    r->rewards = c->rewards;
    r->embed_dim = m->clip->cfg.embed_dim;
    /* clause counts accumulate over seeds: start from zero, also on a second run */
    memset(r->n_type, 0, (size_t)P * DA_N_CLAUSE_TYPES * sizeof *r->n_type);
    memset(r->sat_type, 0, (size_t)P * DA_N_CLAUSE_TYPES * sizeof *r->sat_type);
    free(r->emb);
    r->emb = calloc((size_t)total * r->embed_dim, sizeof *r->emb);
    double *s = malloc(2 * (size_t)P * sizeof *s), *n = malloc(2 * (size_t)P * sizeof *n);
    da_status st = r->emb && s && n ? DA_OK : da_fail(DA_ERR_NOMEM, "eval: out of memory");
    report_run rr = {.r = r, .m = m};
    da_chunk_grid grid = {r->prompts, K, c->image_seed, r->split};
    da_chunks d = {.pipe = m->pipe, .opts = &c->opts, .step_cb = c->step_cb, .step_user = c->step_user,
                   .refiner = c->refiner, .loop = &c->loop,
                   .batch = c->batch, .total = total, .plan = da_chunks_plan_grid, .plan_user = &grid,
                   .score = score_chunk, .progress = c->progress ? report_progress : NULL, .user = &rr};
    if (st == DA_OK) st = da_chunks_run(&d);
    for (int p = 0; p < P && st == DA_OK && r->diversity; p++)
        r->diversity[p] = da_report_diversity(r->emb + (size_t)p * K * r->embed_dim, K, r->embed_dim);
    if (st == DA_OK) summarise(r, s, n);
    free(s);
    free(n);
    r->seconds = da_now_s() - t0;
    return st;
}
