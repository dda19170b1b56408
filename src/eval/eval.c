/* Base-model evaluation (docs/evaluation-base.md):
 *
 *   for split in (held-in = train split, held-out):
 *     prompts = da_world_prompts(rng(prompt_seed + split), split, N)
 *     for prompt p, seed k: image = pipeline(prompt p, seed(split, p, k))
 *                           score = faithfulness(image, prompt p), per clause
 *   mean faithfulness, per clause type, 95% intervals clustered by prompt
 *   VAE: PSNR of decode(encode_mean(x)) on held-out ground-truth images
 *
 * Images are generated in chunks of a FIXED size (cfg->batch) in a fixed
 * order: with OpenBLAS the bits of an image depend on how many rows its
 * GEMMs had (docs/pipeline.md), so a fixed chunking is what makes the
 * numbers repeat exactly; they do not depend on the thread count. */
#include "dalign/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "eval/chunks.h"
#include "eval/provenance.h"

#define Z95 1.959963984540054   /* two-sided 95% normal quantile */
#define PATH_CAP 4096
#define GRID_SCALE 4

static const char *const type_names[DA_N_CLAUSE_TYPES] = {"colour", "shape", "size", "relation", "background"};
static const char *const split_names[2] = {"held-in", "held-out"};
static const char *const split_keys[2] = {"held_in", "held_out"};

const char *da_clause_type_name(int type)
{
    return (unsigned)type < DA_N_CLAUSE_TYPES ? type_names[type] : "?";
}

da_eval_config da_eval_config_default(void)
{
    da_eval_config c = {
        .n_prompts = 200, .n_seeds = 4, .batch = 8, .n_recon = 200, .grid_prompts = 4,
        .prompt_seed = DA_EVAL_PROMPT_SEED, .image_seed = DA_EVAL_IMAGE_SEED,
        .opts = da_sample_opts_default(), .progress = 0,
    };
    return c;
}

da_status da_eval_config_check(const da_eval_config *c)
{
    if (c->n_prompts < 1 || c->n_prompts > DA_EVAL_MAX_PROMPTS)
        return da_fail(DA_ERR_INVALID, "eval: prompts %d not in [1, %d]", c->n_prompts, DA_EVAL_MAX_PROMPTS);
    if (c->n_seeds < 1 || c->n_seeds > DA_EVAL_MAX_SEEDS)
        return da_fail(DA_ERR_INVALID, "eval: seeds %d not in [1, %d]", c->n_seeds, DA_EVAL_MAX_SEEDS);
    if (c->batch < 1 || c->batch > DA_EVAL_MAX_BATCH)
        return da_fail(DA_ERR_INVALID, "eval: batch %d not in [1, %d]", c->batch, DA_EVAL_MAX_BATCH);
    if (c->n_recon < 0 || c->n_recon > DA_EVAL_MAX_PROMPTS)
        return da_fail(DA_ERR_INVALID, "eval: recon images %d not in [0, %d]", c->n_recon, DA_EVAL_MAX_PROMPTS);
    if (c->grid_prompts < 0 || c->grid_prompts > 16)
        return da_fail(DA_ERR_INVALID, "eval: grid prompts %d not in [0, 16]", c->grid_prompts);
    if (c->opts.steps < 1) return da_fail(DA_ERR_INVALID, "eval: steps must be >= 1");
    return DA_OK;
}

/* ---- prompts, seeds, statistics ------------------------------------------ */

/* What a prompt says, with "A right of B" written as "B left of A" (and
 * below as above): two prompts with the same key ask for the same thing. */
static void prompt_key(const da_scene *spec, int key[9])
{
    da_scene s = *spec;
    if (s.n_objects == 2 && (s.relation == DA_RIGHT_OF || s.relation == DA_BELOW)) {
        da_object t = s.obj[0];
        s.obj[0] = s.obj[1];
        s.obj[1] = t;
        s.relation = s.relation == DA_RIGHT_OF ? DA_LEFT_OF : DA_ABOVE;
    }
    int k[9] = {s.n_objects, s.obj[0].colour, s.obj[0].shape, s.obj[0].size, s.relation, s.background,
                s.n_objects == 2 ? s.obj[1].colour : DA_ANY, s.n_objects == 2 ? s.obj[1].shape : DA_ANY,
                s.n_objects == 2 ? s.obj[1].size : DA_ANY};
    memcpy(key, k, sizeof k);
}

/* Scenes of the split with a caption each (da_world_sample, da_world_caption:
 * the training captions' phrasing), keeping a prompt only when what it SAYS
 * differs from every earlier one: captions leave out sizes and backgrounds,
 * so different scenes can give the same prompt. */
da_status da_eval_prompts(uint64_t prompt_seed, da_split split, int n, char *texts, da_scene *scenes)
{
    if (!texts || n < 0) return da_fail(DA_ERR_INVALID, "da_eval_prompts: bad argument");
    da_rng rng;
    da_rng_seed(&rng, prompt_seed + (split == DA_SPLIT_HELDOUT));
    int (*keys)[9] = malloc((size_t)(n ? n : 1) * sizeof *keys);
    if (!keys) return da_fail(DA_ERR_NOMEM, "eval: out of memory");
    da_status st = DA_OK;
    long budget = 1000L + 1000L * n;   /* far more than needed: ~1.1 draws per prompt at n = 200 */
    for (int have = 0; have < n && st == DA_OK;) {
        if (budget-- <= 0) {
            st = da_fail(DA_ERR_RANGE, "eval: found only %d distinct prompts of %d", have, n);
            break;
        }
        da_scene s, spec;
        char *text = texts + (size_t)have * DA_CAPTION_MAX;
        st = da_world_sample(&rng, split, &s);
        if (st == DA_OK) st = da_world_caption(&rng, &s, text, DA_CAPTION_MAX);
        if (st == DA_OK) st = da_parse_prompt(text, &spec);
        if (st != DA_OK) break;
        prompt_key(&spec, keys[have]);
        int dup = 0;
        for (int j = 0; j < have && !dup; j++) dup = !memcmp(keys[j], keys[have], sizeof keys[j]);
        if (dup) continue;
        if (scenes) scenes[have] = s;
        have++;
    }
    free(keys);
    return st;
}

uint64_t da_eval_image_seed(uint64_t image_seed, da_split split, int p, int k)
{
    /* 2^28 per split, not 2^32: the generator keeps only the low 32 bits of
     * a seed (as torch.manual_seed's mt19937 does), and 256 p + k stays
     * below 2^28 for every allowed p (DA_EVAL_MAX_PROMPTS) */
    return image_seed + ((uint64_t)split << 28) + 256u * (uint64_t)p + (uint64_t)k;
}

/* the clustered variance of the ratio S / N: 0 for fewer than two clusters */
static double cluster_var(const double *s, const double *n, int k, double mean, double N)
{
    if (k < 2) return 0.0;
    /* Var(S/N) ~ k/(k-1) sum (s_i - r n_i)^2 / N^2: the ratio estimator's
     * linearisation, which treats the images (or clauses) of one prompt as
     * one correlated cluster instead of independent draws. */
    double ss = 0.0;
    for (int i = 0; i < k; i++) {
        double e = s[i] - mean * n[i];
        ss += e * e;
    }
    return ss * k / (k - 1) / (N * N);
}

da_eval_stat da_eval_cluster_mean(const double *s, const double *n, int k)
{
    da_eval_stat st = {0.0, 0.0, 0, 0.0, 0.0};
    double S = 0.0, N = 0.0;
    for (int i = 0; i < k; i++) {
        S += s[i];
        N += n[i];
    }
    st.n = (long)N;
    if (N <= 0.0) return st;
    st.mean = S / N;
    st.half = Z95 * sqrt(cluster_var(s, n, k, st.mean, N));
    st.lo = st.mean - st.half;
    st.hi = st.mean + st.half;
    return st;
}

/* Wilson's interval of a share p at (effective) sample size m > 0:
 * (p + z^2/2m +- z sqrt(p(1-p)/m + z^2/4m^2)) / (1 + z^2/m) */
static void wilson(double p, double m, double *lo, double *hi)
{
    double z2 = Z95 * Z95, d = 1.0 + z2 / m;
    double centre = (p + z2 / (2.0 * m)) / d;
    double w = Z95 * sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / d;
    /* the bounds hold exactly, not up to rounding: at p = 1 the upper end is 1 */
    *lo = p <= 0.0 || centre - w < 0.0 ? 0.0 : centre - w;
    *hi = p >= 1.0 || centre + w > 1.0 ? 1.0 : centre + w;
}

da_eval_stat da_eval_wilson(double successes, double n)
{
    da_eval_stat st = {0.0, 0.0, 0, 0.0, 0.0};
    if (!(n > 0.0)) return st;
    st.n = (long)n;
    st.mean = successes / n;
    st.half = Z95 * sqrt(st.mean * (1.0 - st.mean) / n);
    wilson(st.mean, n, &st.lo, &st.hi);
    return st;
}

da_eval_stat da_eval_cluster_share(const double *s, const double *n, int k)
{
    da_eval_stat st = da_eval_cluster_mean(s, n, k);
    if (st.n == 0) return st;
    double N = 0.0;
    for (int i = 0; i < k; i++) N += n[i];
    double p = st.mean < 0.0 ? 0.0 : st.mean > 1.0 ? 1.0 : st.mean;
    double var = cluster_var(s, n, k, st.mean, N);
    /* the design effect of the clusters: the count of independent draws
     * that would give this variance; no spread measured (p 0 or 1, one
     * cluster): the plain count */
    double m = var > 0.0 && p > 0.0 && p < 1.0 ? p * (1.0 - p) / var : N;
    wilson(p, m, &st.lo, &st.hi);
    return st;
}

da_status da_eval_score(const float *images, const char *const *prompts, int B, float *score, int *n_type,
                        int *sat_type)
{
    for (int b = 0; b < B; b++) {
        da_faith f;
        da_status s = da_faithfulness(images + (size_t)b * DA_IMG_FLOATS, prompts[b], &f, &score[b]);
        if (s != DA_OK) return s;
        for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
            n_type[b * DA_N_CLAUSE_TYPES + t] = f.n_type[t];
            sat_type[b * DA_N_CLAUSE_TYPES + t] = f.sat_type[t];
        }
    }
    return DA_OK;
}

/* stat over the prompts p with want(p) (NULL: all) of per-prompt (s, n) pairs */
static da_eval_stat prompts_stat(const da_eval_split *s, double *sb, double *nb, unsigned bit)
{
    int k = 0;
    for (int p = 0; p < s->n_prompts; p++) {
        if (bit && !(da_scene_heldout(&s->scenes[p]) & bit)) continue;
        double sum = 0.0;
        for (int j = 0; j < s->n_seeds; j++) sum += s->scores[(size_t)p * s->n_seeds + j];
        sb[k] = sum;
        nb[k++] = s->n_seeds;
    }
    /* faithfulness: a fraction of clauses, so a share (inside [0, 1]), except the
     * overall mean, whose interval has always been mean +- half (kept: a
     * published table reads it that way) */
    return bit ? da_eval_cluster_share(sb, nb, k) : da_eval_cluster_mean(sb, nb, k);
}

void da_eval_split_stats(da_eval_split *s)
{
    double *sb = malloc((size_t)s->n_prompts * sizeof *sb), *nb = malloc((size_t)s->n_prompts * sizeof *nb);
    if (!sb || !nb) {   /* statistics stay zero; the caller checked bigger allocations */
        free(sb);
        free(nb);
        return;
    }
    int P = s->n_prompts, K = s->n_seeds;
    s->faith = prompts_stat(s, sb, nb, 0);
    s->heldout_pair = prompts_stat(s, sb, nb, DA_HELDOUT_PAIR);
    s->heldout_layout = prompts_stat(s, sb, nb, DA_HELDOUT_RELATION);
    for (int p = 0; p < P; p++) {
        int exact = 0;
        for (int j = 0; j < K; j++) exact += s->scores[(size_t)p * K + j] == 1.0f;
        sb[p] = exact;
        nb[p] = K;
    }
    s->exact = da_eval_cluster_share(sb, nb, P);
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        int k = 0;   /* prompts without a clause of this type are no cluster of it */
        for (int p = 0; p < P; p++) {
            int n = s->n_type[p * DA_N_CLAUSE_TYPES + t];
            if (!n) continue;
            sb[k] = s->sat_type[p * DA_N_CLAUSE_TYPES + t];
            nb[k++] = n;
        }
        s->type[t] = da_eval_cluster_share(sb, nb, k);
    }
    free(sb);
    free(nb);
}

/* ---- generation ------------------------------------------------------------- */

static void split_free(da_eval_split *s)
{
    free(s->prompts);
    free(s->scenes);
    free(s->scores);
    free(s->n_type);
    free(s->sat_type);
    free(s->grid);
    memset(s, 0, sizeof *s);
}

void da_eval_result_free(da_eval_result *r)
{
    if (!r) return;
    split_free(&r->split[0]);
    split_free(&r->split[1]);
}

static da_status split_alloc(da_eval_split *s, const da_eval_config *c)
{
    size_t P = (size_t)c->n_prompts, K = (size_t)c->n_seeds, G = (size_t)c->grid_prompts;
    if (G > P) G = P;
    s->n_prompts = c->n_prompts;
    s->n_seeds = c->n_seeds;
    s->grid_prompts = (int)G;
    s->prompts = calloc(P, DA_CAPTION_MAX);
    s->scenes = calloc(P, sizeof *s->scenes);
    s->scores = calloc(P * K, sizeof *s->scores);
    s->n_type = calloc(P * DA_N_CLAUSE_TYPES, sizeof *s->n_type);
    s->sat_type = calloc(P * DA_N_CLAUSE_TYPES, sizeof *s->sat_type);
    s->grid = calloc(G * K * DA_IMG_FLOATS + 1, sizeof *s->grid);
    if (!s->prompts || !s->scenes || !s->scores || !s->n_type || !s->sat_type || !s->grid)
        return da_fail(DA_ERR_NOMEM, "eval: out of memory for %zu prompts", P);
    return DA_OK;
}

/* one split's images as the chunk stream's scorer sees them */
typedef struct split_run {
    da_eval_split *s;
    long done;                /* images scored */
    double faith_sum;         /* their faithfulness, summed in image order */
    char tag[32];             /* "eval-base: held-in ": the progress line's */
    int n_type[DA_EVAL_MAX_BATCH * DA_N_CLAUSE_TYPES], sat_type[DA_EVAL_MAX_BATCH * DA_N_CLAUSE_TYPES];
} split_run;

/* faithfulness and clause counts of a chunk (image j = prompt j / K, seed
 * j % K) into the split; the images of its first prompts into its grid */
static da_status score_chunk(void *user, const da_chunk *ch, int *stop)
{
    (void)stop;
    split_run *sr = user;
    da_eval_split *s = sr->s;
    float *score = s->scores + ch->first;
    da_status st = da_eval_score(ch->images, ch->prompts, ch->n, score, sr->n_type, sr->sat_type);
    if (st != DA_OK) return st;
    for (int b = 0; b < ch->n; b++) {
        long j = ch->first + b;
        int p = (int)(j / s->n_seeds);
        for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
            s->n_type[p * DA_N_CLAUSE_TYPES + t] += sr->n_type[b * DA_N_CLAUSE_TYPES + t];
            s->sat_type[p * DA_N_CLAUSE_TYPES + t] += sr->sat_type[b * DA_N_CLAUSE_TYPES + t];
        }
        if (p < s->grid_prompts)
            memcpy(s->grid + (size_t)j * DA_IMG_FLOATS, ch->images + (size_t)b * DA_IMG_FLOATS,
                   DA_IMG_FLOATS * sizeof(float));
        sr->faith_sum += score[b];
    }
    sr->done = ch->first + ch->n;
    return DA_OK;
}

static void split_progress(void *user, da_ticker *t)
{
    const split_run *sr = user;
    da_ticker_faith(t, sr->tag, sr->done, (long)sr->s->n_prompts * sr->s->n_seeds, sr->faith_sum);
}

static da_status run_split(da_pipeline *pipe, const da_eval_config *c, da_split split, da_eval_split *s)
{
    da_status st = split_alloc(s, c);
    if (st == DA_OK) st = da_eval_prompts(c->prompt_seed, split, c->n_prompts, s->prompts, s->scenes);
    if (st != DA_OK) return st;
    split_run sr = {.s = s};
    snprintf(sr.tag, sizeof sr.tag, "eval-base: %-8s", split_names[split]);
    da_chunk_grid grid = {s->prompts, c->n_seeds, c->image_seed, split};
    da_chunks d = {.pipe = pipe, .opts = &c->opts, .batch = c->batch, .total = (long)c->n_prompts * c->n_seeds,
                   .plan = da_chunks_plan_grid, .plan_user = &grid, .score = score_chunk,
                   .progress = c->progress ? split_progress : NULL, .user = &sr};
    st = da_chunks_run(&d);
    if (st == DA_OK) da_eval_split_stats(s);
    return st;
}

da_status da_eval_base_run(da_pipeline *p, const da_eval_config *c, da_eval_result *r)
{
    memset(r, 0, sizeof *r);
    if (!p || !c) return da_fail(DA_ERR_INVALID, "da_eval_base_run: NULL argument");
    da_status st = da_eval_config_check(c);
    if (st != DA_OK) return st;
    double t0 = da_now_s();
    for (int sp = 0; sp < 2 && st == DA_OK; sp++) st = run_split(p, c, (da_split)sp, &r->split[sp]);
    r->seconds_generate = da_now_s() - t0;
    if (st == DA_OK && c->n_recon > 0) {
        double t1 = da_now_s();
        if (c->progress) da_log(DA_LOG_INFO, "eval-base: VAE reconstruction of %d held-out images", c->n_recon);
        st = da_eval_vae_psnr(p->vae, c->n_recon, DA_EVAL_RECON_SEED, c->batch, &r->psnr, &r->psnr_image,
                              &r->psnr_min);
        r->n_recon = c->n_recon;
        r->seconds_recon = da_now_s() - t1;
    }
    return st;
}

/* ---- VAE reconstruction ---------------------------------------------------------- */

/* one chunk: x (B, 3, 32, 32) in [0, 1] -> per-image squared-error sums on [0, 1] */
static void recon_chunk(da_tape *t, const da_vae *vae, float *x, int B, double *sq)
{
    size_t n = (size_t)B * DA_IMG_FLOATS;
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * x[i] - 1.0f;   /* the VAE's [-1, 1] */
    da_tape_reset(t);
    int shape[4] = {B, 3, DA_IMG, DA_IMG};
    da_tensor *mean, *logvar;
    da_vae_encode(t, vae, da_leaf(t, x, NULL, 4, shape), &mean, &logvar);
    da_tensor *y = da_vae_decode(t, vae, mean);   /* the mean, not a sample: the latent itself */
    for (int b = 0; b < B; b++) {
        double e = 0.0;
        for (size_t i = (size_t)b * DA_IMG_FLOATS; i < (size_t)(b + 1) * DA_IMG_FLOATS; i++) {
            double v = fmin(fmax(0.5 * (y->data[i] + 1.0), 0.0), 1.0), w = 0.5 * (x[i] + 1.0);
            e += (v - w) * (v - w);
        }
        sq[b] = e;
    }
}

static double psnr_of(double mse) { return 10.0 * log10(1.0 / fmax(mse, 1e-12)); }   /* 120 dB at most */

da_status da_eval_vae_psnr(const da_vae *vae, int n, uint64_t seed, int batch, double *psnr,
                           da_eval_stat *per_image, double *worst)
{
    if (!vae || n < 1 || batch < 1) return da_fail(DA_ERR_INVALID, "da_eval_vae_psnr: bad arguments");
    float *x = malloc((size_t)batch * DA_IMG_FLOATS * sizeof(float));
    double *sq = malloc((size_t)batch * sizeof *sq), *ps = malloc((size_t)n * sizeof *ps);
    double *ones = malloc((size_t)n * sizeof *ones);
    da_status st = x && sq && ps && ones ? DA_OK : da_fail(DA_ERR_NOMEM, "eval: out of memory");
    da_tape t;
    da_tape_init(&t, (size_t)1 << 24);
    da_tape_set_grad(&t, 0);
    da_rng rng;
    da_rng_seed(&rng, seed);
    double total = 0.0;
    *worst = INFINITY;
    for (int i0 = 0; i0 < n && st == DA_OK; i0 += batch) {
        int B = n - i0 < batch ? n - i0 : batch;
        da_scene scene;
        for (int b = 0; b < B && st == DA_OK; b++)
            st = da_world_example(&rng, DA_SPLIT_HELDOUT, &scene, x + (size_t)b * DA_IMG_FLOATS, NULL, 0);
        if (st != DA_OK) break;
        recon_chunk(&t, vae, x, B, sq);
        for (int b = 0; b < B; b++) {
            total += sq[b];
            ps[i0 + b] = psnr_of(sq[b] / DA_IMG_FLOATS);
            ones[i0 + b] = 1.0;
            if (ps[i0 + b] < *worst) *worst = ps[i0 + b];
        }
    }
    if (st == DA_OK) {
        *psnr = psnr_of(total / ((double)n * DA_IMG_FLOATS));
        *per_image = da_eval_cluster_mean(ps, ones, n);
    }
    da_tape_free(&t);
    free(x);
    free(sq);
    free(ps);
    free(ones);
    return st;
}

/* ---- output files ---------------------------------------------------------------- */

static void json_stat(FILE *f, const char *key, const da_eval_stat *s)
{
    fprintf(f, "\"%s\": {\"mean\": %.6f, \"ci95\": [%.6f, %.6f], \"n\": %ld}", key, s->mean, s->lo, s->hi, s->n);
}

typedef struct out_ctx {
    const da_eval_config *c;
    const da_eval_result *r;
    const char *weights, *unet;
    const da_provenance *prov;
} out_ctx;

static void write_json_split(FILE *f, const da_eval_split *s, int sp)
{
    fprintf(f, "  \"%s\": {\n    \"prompts\": %d, \"images\": %d,\n    ", split_keys[sp], s->n_prompts,
            s->n_prompts * s->n_seeds);
    json_stat(f, "faithfulness", &s->faith);
    fprintf(f, ",\n    ");
    json_stat(f, "all_clauses", &s->exact);
    fprintf(f, ",\n    \"clauses\": {\n");
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        fprintf(f, "      ");
        json_stat(f, type_names[t], &s->type[t]);
        fprintf(f, "%s\n", t + 1 < DA_N_CLAUSE_TYPES ? "," : "");
    }
    fprintf(f, "    }");
    if (sp == DA_SPLIT_HELDOUT) {
        fprintf(f, ",\n    ");
        json_stat(f, "heldout_pair_prompts", &s->heldout_pair);
        fprintf(f, ",\n    ");
        json_stat(f, "heldout_layout_prompts", &s->heldout_layout);
    }
    fprintf(f, "\n  },\n");
}

/* Only what the inputs determine goes in: no timings, no thread count, so
 * the same inputs give the same file. */
static void write_json(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    const da_eval_config *c = o->c;
    const da_eval_result *r = o->r;
    fprintf(f, "{\n  \"weights\": ");
    da_json_write_str(f, o->weights);
    fprintf(f, ",\n  \"unet\": ");
    da_json_write_str(f, o->unet);
    fprintf(f, ",\n");
    da_provenance_json(f, o->prov, "  ");
    fprintf(f, ",\n  \"config\": {\"prompts\": %d, \"seeds\": %d, \"batch\": %d, \"sampler\": \"%s\", "
               "\"steps\": %d, \"cfg\": %g, \"eta\": %g, \"prompt_seed\": %llu, \"image_seed\": %llu, "
               "\"recon_images\": %d, \"recon_seed\": %u, \"gemm\": \"%s\"},\n",
            c->n_prompts, c->n_seeds, c->batch, da_sampler_name(c->opts.sampler), c->opts.steps, (double)c->opts.cfg,
            (double)c->opts.eta, (unsigned long long)c->prompt_seed, (unsigned long long)c->image_seed, c->n_recon,
            DA_EVAL_RECON_SEED, da_gemm_backend());
    for (int sp = 0; sp < 2; sp++) write_json_split(f, &r->split[sp], sp);
    fprintf(f, "  \"vae\": {\"images\": %d, \"psnr\": %.4f, ", r->n_recon, r->n_recon ? r->psnr : 0.0);
    json_stat(f, "psnr_per_image", &r->psnr_image);
    fprintf(f, ", \"psnr_min\": %.4f}\n}\n", r->n_recon ? r->psnr_min : 0.0);
}

static void table_cell(FILE *f, const da_eval_stat *s)
{
    if (s->n) fprintf(f, " %.3f [%.3f, %.3f] |", s->mean, s->lo, s->hi);
    else fprintf(f, " - |");
}

void da_eval_table(FILE *f, const da_eval_result *r)
{
    fprintf(f, "| split | prompts | images | faithfulness | all clauses |");
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) fprintf(f, " %s |", type_names[t]);
    fprintf(f, "\n|---|---|---|---|---|");
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (int sp = 0; sp < 2; sp++) {
        const da_eval_split *s = &r->split[sp];
        fprintf(f, "| %s | %d | %d |", split_names[sp], s->n_prompts, s->n_prompts * s->n_seeds);
        table_cell(f, &s->faith);
        table_cell(f, &s->exact);
        for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) table_cell(f, &s->type[t]);
        fprintf(f, "\n");
    }
}

static void write_table(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    const da_eval_config *c = o->c;
    const da_eval_result *r = o->r;
    const da_eval_split *h = &r->split[DA_SPLIT_HELDOUT];
    fprintf(f, "Base model: weights `%s`, UNet `%s`; %s, %d steps, cfg %g, batch %d; %d prompts x %d seeds per "
               "split.\n\n",
            o->weights, o->unet, da_sampler_name(c->opts.sampler), c->opts.steps, (double)c->opts.cfg, c->batch,
            c->n_prompts, c->n_seeds);
    da_eval_table(f, r);
    fprintf(f, "\nMean [95%% interval] (clustered by prompt; shares: Wilson score interval, inside [0, 1]). "
               "Clause columns: fraction of that type's clauses satisfied.\n\nHeld-out prompts with a held-out "
               "colour-shape pair: faithfulness %.3f [%.3f, %.3f] (%ld images); with a held-out layout: %.3f "
               "[%.3f, %.3f] (%ld images).\n",
            h->heldout_pair.mean, h->heldout_pair.lo, h->heldout_pair.hi, h->heldout_pair.n, h->heldout_layout.mean,
            h->heldout_layout.lo, h->heldout_layout.hi, h->heldout_layout.n);
    if (r->n_recon)
        fprintf(f, "\nVAE reconstruction, %d held-out ground-truth images: PSNR %.2f dB (pooled MSE); per image "
                   "%.2f ± %.2f dB, worst %.2f dB.\n",
                r->n_recon, r->psnr, r->psnr_image.mean, r->psnr_image.half, r->psnr_min);
}

static void write_tsv(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    fprintf(f, "split\tindex\tprompt\tmean");
    for (int k = 0; k < o->c->n_seeds; k++) fprintf(f, "\tseed%d", k);
    fprintf(f, "\n");
    for (int sp = 0; sp < 2; sp++) {
        const da_eval_split *s = &o->r->split[sp];
        for (int p = 0; p < s->n_prompts; p++) {
            const float *sc = s->scores + (size_t)p * s->n_seeds;
            double m = 0.0;
            for (int k = 0; k < s->n_seeds; k++) m += sc[k];
            fprintf(f, "%s\t%d\t%s\t%.4f", split_names[sp], p, s->prompts + (size_t)p * DA_CAPTION_MAX,
                    m / s->n_seeds);
            for (int k = 0; k < s->n_seeds; k++) fprintf(f, "\t%.4f", (double)sc[k]);
            fprintf(f, "\n");
        }
    }
}

static void write_grid_txt(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    int row = 1;
    fprintf(f, "grid.png: one row per prompt, one column per seed (k = 0..%d), %dx upscaled\n", o->c->n_seeds - 1,
            GRID_SCALE);
    for (int sp = 0; sp < 2; sp++) {
        const da_eval_split *s = &o->r->split[sp];
        for (int p = 0; p < s->grid_prompts; p++, row++) {
            fprintf(f, "row %d (%s, prompt %d): %s  [faithfulness", row, split_names[sp], p,
                    s->prompts + (size_t)p * DA_CAPTION_MAX);
            for (int k = 0; k < s->n_seeds; k++) fprintf(f, " %.2f", (double)s->scores[(size_t)p * s->n_seeds + k]);
            fprintf(f, "]\n");
        }
    }
}

static da_status write_grid(const char *dir, const da_eval_result *r)
{
    int K = r->split[0].n_seeds, n = (r->split[0].grid_prompts + r->split[1].grid_prompts) * K;
    if (n == 0) return DA_OK;
    float *all = malloc((size_t)n * DA_IMG_FLOATS * sizeof(float));
    if (!all) return da_fail(DA_ERR_NOMEM, "out of memory");
    size_t n0 = (size_t)r->split[0].grid_prompts * K * DA_IMG_FLOATS;
    memcpy(all, r->split[0].grid, n0 * sizeof(float));
    memcpy(all + n0, r->split[1].grid, (size_t)r->split[1].grid_prompts * K * DA_IMG_FLOATS * sizeof(float));
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/grid.png", dir);
    da_status s = da_png_save_images(path, all, n, K, GRID_SCALE);
    free(all);
    return s;
}

da_status da_eval_write(const char *dir, const da_eval_config *c, const da_eval_result *r,
                        const char *weights_dir, const char *unet_name)
{
    static const char *const files[] = {"metrics.json", "table.md", "prompts.tsv", "grid.txt", "grid.png", NULL};
    da_provenance prov;
    da_status s = da_make_dirs(dir);
    if (s == DA_OK) s = da_done_clear(dir);   /* unfinished from here until the marker is back */
    if (s == DA_OK) s = da_provenance_collect(&prov, weights_dir, unet_name, NULL);
    if (s != DA_OK) return s;
    out_ctx o = {c, r, weights_dir ? weights_dir : "", unet_name ? unet_name : "unet", &prov};
    s = da_write_with(dir, "metrics.json", write_json, &o);
    if (s == DA_OK) s = da_write_with(dir, "table.md", write_table, &o);
    if (s == DA_OK) s = da_write_with(dir, "prompts.tsv", write_tsv, &o);
    if (s == DA_OK) s = da_write_with(dir, "grid.txt", write_grid_txt, &o);
    if (s == DA_OK) s = write_grid(dir, r);
    if (s == DA_OK) s = da_done_mark(dir, files);   /* last: the folder is complete */
    return s;
}
