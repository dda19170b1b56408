/* PromptLoop's sampling loop (docs/promptloop.md "The loop"): a prompt
 * writer (the refiner, or any rule a test or an ablation supplies) rewrites
 * each image's prompt K times along the trajectory, and the following steps
 * are conditioned on what it wrote.
 *
 *   loop     after step s_k = floor(k * n_steps / K), k = 0 .. K-1 (or spread
 *            over a window of steps: da_loop_refine_step), the writer
 *            reads (x̂0 of that step, its timestep, the query, the prompt in
 *            use) and writes the prompt of steps s_k + 1 ..
 *   apriori  the same steps, the K prompts written before sampling from the
 *            query alone (a zero latent, the step's timestep)
 *   once     one prompt, written before step 0 from the query alone (a zero
 *            latent, step 0's timestep), used by every step
 *
 * Each image has its own writer generator (seeded by refine_seeds[i],
 * independent of its noise seed, so a GRPO group can share the initial noise
 * and still differ in prompts); refinement k of image i is row i * K + k of
 * the trace. So an image's prompts and pixels depend only on its query,
 * seeds and the models, never on the batch it ran in. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/data.h"
#include "dalign/pipeline.h"

static const char *const MODE_NAMES[] = {"loop", "apriori", "once"};

da_status da_refine_mode_parse(const char *name, da_refine_mode *out)
{
    for (int m = 0; m < 3; m++)
        if (name && strcmp(name, MODE_NAMES[m]) == 0) {
            *out = (da_refine_mode)m;
            return DA_OK;
        }
    return da_fail(DA_ERR_INVALID, "unknown refine mode '%s' (loop, apriori or once)", name ? name : "(null)");
}

const char *da_refine_mode_name(da_refine_mode m)
{
    return (unsigned)m < 3 ? MODE_NAMES[m] : NULL;
}

da_loop_opts da_loop_opts_default(void)
{
    return (da_loop_opts){.mode = DA_REFINE_LOOP, .n_refine = 4, .temperature = 0.0f, .keep_meaning = 0};
}

int da_loop_n_refine(const da_loop_opts *lo) { return lo->mode == DA_REFINE_ONCE ? 1 : lo->n_refine; }

/* the window's end: window_end, or the trajectory's when unset */
static int window_end(const da_loop_opts *lo, int n_steps) { return lo->window_end ? lo->window_end : n_steps; }

int da_loop_refine_step(const da_loop_opts *lo, int k, int n_steps)
{
    if (lo->mode == DA_REFINE_ONCE || lo->n_refine < 1) return -1;
    int first = lo->window_first, span = window_end(lo, n_steps) - first;
    return first + (int)((int64_t)k * span / lo->n_refine);
}

/* a run of decimal digits at *p, at most 9 of them (no sign, no space) */
static int parse_step(const char **p, int *out)
{
    int v = 0, n = 0;
    for (; **p >= '0' && **p <= '9'; (*p)++, n++) {
        if (n == 9) return -1;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return n ? 0 : -1;
}

da_status da_loop_window_parse(const char *text, int *first, int *end)
{
    const char *p = text ? text : "";
    int a, b;
    if (parse_step(&p, &a) || *p++ != ':' || parse_step(&p, &b) || *p || b <= a)
        return da_fail(DA_ERR_INVALID, "refinement window '%s' is not FIRST:END, two step numbers with FIRST < END",
                       text ? text : "(null)");
    *first = a;
    *end = b;
    return DA_OK;
}

void da_loop_steps_text(const da_loop_opts *lo, int n_steps, char *buf, size_t cap)
{
    if (!cap) return;
    if (lo->mode == DA_REFINE_ONCE) {
        snprintf(buf, cap, "before step 0");
        return;
    }
    if (lo->n_refine < 1) {
        snprintf(buf, cap, "no refinement");
        return;
    }
    size_t n = (size_t)snprintf(buf, cap, "after step%s", lo->n_refine > 1 ? "s" : "");
    for (int k = 0; k < lo->n_refine && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%d", k ? ", " : " ", da_loop_refine_step(lo, k, n_steps));
    if (n >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
}

da_status da_loop_opts_check(const da_loop_opts *lo, int n_steps)
{
    if ((unsigned)lo->mode > DA_REFINE_ONCE) return da_fail(DA_ERR_INVALID, "unknown refine mode %d", (int)lo->mode);
    if (!(lo->temperature >= 0.0f) || lo->temperature > 1e6f)
        return da_fail(DA_ERR_INVALID, "refiner temperature %g must be >= 0", (double)lo->temperature);
    int windowed = lo->window_first != 0 || lo->window_end != 0;
    if (lo->mode == DA_REFINE_ONCE)
        return windowed ? da_fail(DA_ERR_INVALID, "a refinement window needs mode loop or apriori (once writes "
                                                  "one prompt, before step 0)")
                        : DA_OK;
    if (n_steps < 1) return da_fail(DA_ERR_INVALID, "a trajectory of %d steps has no step to refine after", n_steps);
    int first = lo->window_first, end = window_end(lo, n_steps);
    if (first < 0 || first >= end || end > n_steps)
        return da_fail(DA_ERR_INVALID, "refinement window %d:%d does not fit a trajectory of %d steps (0 <= first "
                       "< end <= %d)", first, end, n_steps, n_steps);
    if (lo->n_refine < 1 || lo->n_refine > end - first)
        return windowed ? da_fail(DA_ERR_INVALID, "%d refinements do not fit the window %d:%d (1 .. %d)",
                                  lo->n_refine, first, end, end - first)
                        : da_fail(DA_ERR_INVALID, "%d refinements do not fit a trajectory of %d steps (1 .. %d)",
                                  lo->n_refine, n_steps, n_steps);
    return DA_OK;
}

uint64_t da_loop_refine_seed(uint64_t seed)
{
    /* one splitmix64 step: nearby noise seeds give unrelated writer seeds */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- trace ------------------------------------------------------------------ */

void da_loop_trace_free(da_loop_trace *tr)
{
    if (!tr) return;
    free(tr->steps);
    free(tr->x0);
    free(tr->timesteps);
    free(tr->query_ids);
    free(tr->query_keep);
    free(tr->prompt_ids);
    free(tr->prompt_keep);
    free(tr->out_ids);
    free(tr->logprobs);
    free(tr->used_ids);
    memset(tr, 0, sizeof *tr);
}

da_status da_loop_trace_alloc(da_loop_trace *tr, int n, int K, int latent_n)
{
    if (!tr || n < 1 || K < 1 || latent_n < 1) return da_fail(DA_ERR_INVALID, "da_loop_trace_alloc: bad sizes");
    memset(tr, 0, sizeof *tr);
    size_t rows = (size_t)n * K, M = DA_MAX_TOKENS;
    tr->n = n;
    tr->K = K;
    tr->latent_n = latent_n;
    tr->steps = malloc((size_t)K * sizeof *tr->steps);
    tr->x0 = calloc(rows * latent_n, sizeof *tr->x0);
    tr->timesteps = malloc(rows * sizeof *tr->timesteps);
    tr->query_ids = malloc((size_t)n * M * sizeof *tr->query_ids);
    tr->query_keep = malloc((size_t)n * M);
    tr->prompt_ids = malloc(rows * M * sizeof *tr->prompt_ids);
    tr->prompt_keep = malloc(rows * M);
    tr->out_ids = malloc(rows * M * sizeof *tr->out_ids);
    tr->logprobs = malloc(rows * sizeof *tr->logprobs);
    tr->used_ids = malloc(rows * M * sizeof *tr->used_ids);
    if (!tr->steps || !tr->x0 || !tr->timesteps || !tr->query_ids || !tr->query_keep || !tr->prompt_ids ||
        !tr->prompt_keep || !tr->out_ids || !tr->logprobs || !tr->used_ids) {
        da_loop_trace_free(tr);
        return da_fail(DA_ERR_NOMEM, "loop trace: out of memory for %d images x %d refinements", n, K);
    }
    return DA_OK;
}

/* ---- the refiner as a writer ----------------------------------------------- */

da_status da_loop_refiner_writer(void *user, const float *x0, float timestep, const int *query_ids,
                                 const uint8_t *query_keep, const int *prompt_ids, const uint8_t *prompt_keep,
                                 float temperature, da_rng *rng, int *out_ids, float *logprob)
{
    return da_refiner_generate((const da_refiner *)user, x0, &timestep, query_ids, query_keep, prompt_ids,
                               prompt_keep, 1, temperature, rng, out_ids, logprob);
}

/* ---- one run ------------------------------------------------------------------ */

typedef struct loop_run {
    const da_loop_opts *lo;
    da_loop_writer write;
    void *writer_user;
    da_loop_trace *tr;
    da_rng *rngs;          /* (n) one writer generator per image */
    int n, K, next;        /* next: the refinement the callback waits for */
    int *new_ids;          /* (n, M) what the callback hands the pipeline */
    da_status status;      /* a writer's error, reported after the run */
} loop_run;

/* do the token rows a and b (BOS .. EOS PAD..) parse to the same meaning? */
static int same_meaning(const int *a, const int *b)
{
    da_scene sa, sb;
    return da_parse_prompt_ids(a, &sa) == DA_OK && da_parse_prompt_ids(b, &sb) == DA_OK &&
           da_spec_same_meaning(&sa, &sb);
}

/* refinement k of image i: the writer reads row i*K + k of the trace
 * (observation, timestep, prompt in use) and writes that row's output */
static da_status write_row(loop_run *r, int i, int k)
{
    da_loop_trace *tr = r->tr;
    size_t row = (size_t)i * r->K + k, M = DA_MAX_TOKENS;
    da_status s = r->write(r->writer_user, tr->x0 + row * tr->latent_n, tr->timesteps[row],
                           tr->query_ids + i * M, tr->query_keep + i * M, tr->prompt_ids + row * M,
                           tr->prompt_keep + row * M, r->lo->temperature, &r->rngs[i], tr->out_ids + row * M,
                           &tr->logprobs[row]);
    if (s != DA_OK) return s;
    int *out = tr->out_ids + row * M;
    if (out[0] != DA_TOK_BOS)
        return da_fail(DA_ERR_INVALID, "prompt writer: image %d, refinement %d does not start with BOS", i, k);
    /* keep_meaning: a rewrite that says something else is discarded (the
     * written tokens stay in out_ids: they are the action the RL trainer
     * scores; the image goes on with the prompt in use) */
    int discard = r->lo->keep_meaning && !same_meaning(out, tr->query_ids + i * M);
    memcpy(tr->used_ids + row * M, discard ? tr->prompt_ids + row * M : out, M * sizeof(int));
    return DA_OK;
}

/* row i*K + k's prompt in use: the query for the first refinement, else the
 * prompt refinement k - 1 left the image with */
static void set_prompt_in_use(loop_run *r, int i, int k)
{
    da_loop_trace *tr = r->tr;
    size_t M = DA_MAX_TOKENS, row = (size_t)i * r->K + k;
    const int *src = k == 0 ? tr->query_ids + i * M : tr->used_ids + (row - 1) * M;
    for (size_t j = 0; j < M; j++) {
        tr->prompt_ids[row * M + j] = src[j];
        tr->prompt_keep[row * M + j] = src[j] != DA_TOK_PAD;
    }
}

/* apriori and once: every prompt written before sampling, from a zero latent
 * (the trace's x0 rows stay zero) */
static da_status write_ahead(loop_run *r, const float *timestep_of_step, int n_steps)
{
    for (int i = 0; i < r->n; i++)
        for (int k = 0; k < r->K; k++) {
            int step = da_loop_refine_step(r->lo, k, n_steps);
            r->tr->timesteps[(size_t)i * r->K + k] = timestep_of_step[step < 0 ? 0 : step];
            set_prompt_in_use(r, i, k);
            da_status s = write_row(r, i, k);
            if (s != DA_OK) return s;
        }
    return DA_OK;
}

/* the pipeline's callback: at step s_k hand over refinement k's prompts
 * (loop: written now from this step's x̂0) */
static int on_step(da_step_info *info, void *user)
{
    loop_run *r = user;
    if (r->next >= r->K || info->step != r->tr->steps[r->next]) return 0;
    int k = r->next++;
    size_t M = DA_MAX_TOKENS;
    da_loop_trace *tr = r->tr;
    for (int i = 0; i < r->n; i++) {
        size_t row = (size_t)i * r->K + k;
        if (r->lo->mode == DA_REFINE_LOOP) {
            memcpy(tr->x0 + row * tr->latent_n, info->x0 + (size_t)i * tr->latent_n,
                   (size_t)tr->latent_n * sizeof(float));
            tr->timesteps[row] = info->timestep;
            set_prompt_in_use(r, i, k);
            da_status s = write_row(r, i, k);
            if (s != DA_OK) {
                r->status = s;
                return 1;   /* stop the run; the error is reported after it */
            }
        }
        memcpy(r->new_ids + i * M, tr->used_ids + row * M, M * sizeof(int));
    }
    info->new_ids = r->new_ids;
    return 0;
}

static da_status check_loop_args(const da_pipeline *p, const da_sample_opts *opts, const da_loop_opts *lo,
                                 da_loop_writer write, const char *const *queries, const uint64_t *seeds,
                                 const uint64_t *refine_seeds, int n)
{
    if (!p || !opts || !lo || !write || !queries || !seeds || !refine_seeds)
        return da_fail(DA_ERR_INVALID, "da_loop_generate: NULL argument");
    da_status s = da_loop_opts_check(lo, opts->steps);
    if (s != DA_OK) return s;
    if (n < 1) return da_fail(DA_ERR_INVALID, "number of images %d must be >= 1", n);
    return DA_OK;
}

/* the trace's query rows and refinement steps */
static da_status fill_queries(loop_run *r, const char *const *queries, int n_steps)
{
    for (int k = 0; k < r->K; k++) r->tr->steps[k] = da_loop_refine_step(r->lo, k, n_steps);
    for (int i = 0; i < r->n; i++) {
        if (!queries[i]) return da_fail(DA_ERR_INVALID, "query %d is NULL", i);
        da_status s = da_prompt_tokens(queries[i], r->tr->query_ids + (size_t)i * DA_MAX_TOKENS,
                                       r->tr->query_keep + (size_t)i * DA_MAX_TOKENS);
        if (s != DA_OK) return s;
    }
    return DA_OK;
}

da_status da_loop_generate_with(da_pipeline *p, const da_sample_opts *opts, const da_loop_opts *lo,
                                da_loop_writer write, void *writer_user, const char *const *queries,
                                const uint64_t *seeds, const uint64_t *refine_seeds, int n, da_loop_trace *trace,
                                float *out_images, float *out_latents)
{
    da_status s = check_loop_args(p, opts, lo, write, queries, seeds, refine_seeds, n);
    if (s != DA_OK) return s;
    int K = da_loop_n_refine(lo), latent_n = p->vae->cfg.latent_channels * p->latent_h * p->latent_w;
    da_loop_trace own;
    da_loop_trace *tr = trace ? trace : &own;
    s = da_loop_trace_alloc(tr, n, K, latent_n);
    if (s != DA_OK) return s;
    loop_run r = {.lo = lo, .write = write, .writer_user = writer_user, .tr = tr, .n = n, .K = K};
    r.rngs = malloc((size_t)n * sizeof *r.rngs);
    r.new_ids = malloc((size_t)n * DA_MAX_TOKENS * sizeof *r.new_ids);
    float *times = malloc((size_t)opts->steps * sizeof *times);
    if (!r.rngs || !r.new_ids || !times) s = da_fail(DA_ERR_NOMEM, "loop: out of memory for %d images", n);
    for (int i = 0; s == DA_OK && i < n; i++) da_rng_seed(&r.rngs[i], refine_seeds[i]);
    if (s == DA_OK) s = fill_queries(&r, queries, opts->steps);
    if (s == DA_OK && lo->mode != DA_REFINE_LOOP) s = da_sampler_timesteps(p, opts, times);
    if (s == DA_OK && lo->mode != DA_REFINE_LOOP) s = write_ahead(&r, times, opts->steps);
    if (s == DA_OK) {
        /* once: the written prompt from step 0 on; else the query until s_0 */
        const int *ids = lo->mode == DA_REFINE_ONCE ? tr->used_ids : tr->query_ids;
        da_step_cb cb = lo->mode == DA_REFINE_ONCE ? NULL : on_step;
        s = da_pipeline_generate_ids(p, opts, ids, NULL, seeds, n, cb, &r, out_images, out_latents);
        if (s == DA_OK && r.status != DA_OK) s = r.status;
    }
    free(r.rngs);
    free(r.new_ids);
    free(times);
    if (!trace || s != DA_OK) da_loop_trace_free(tr);
    return s;
}

da_status da_loop_generate(da_pipeline *p, const da_refiner *refiner, const da_sample_opts *opts,
                           const da_loop_opts *lo, const char *const *queries, const uint64_t *seeds,
                           const uint64_t *refine_seeds, int n, da_loop_trace *trace, float *out_images,
                           float *out_latents)
{
    if (!refiner) return da_fail(DA_ERR_INVALID, "da_loop_generate: NULL refiner");
    if (refiner->cfg.vocab_size != da_vocab_size() || refiner->cfg.max_tokens != DA_MAX_TOKENS)
        return da_fail(DA_ERR_INVALID, "refiner vocabulary %d x %d tokens does not match the tokenizer's %d x %d",
                       refiner->cfg.vocab_size, refiner->cfg.max_tokens, da_vocab_size(), DA_MAX_TOKENS);
    int latent_n = p ? p->vae->cfg.latent_channels * p->latent_h * p->latent_w : 0;
    const da_refiner_config *c = &refiner->cfg;
    if (p && c->latent_channels * c->latent_size * c->latent_size != latent_n)
        return da_fail(DA_ERR_INVALID, "refiner reads %dx%dx%d latents, the pipeline makes %d values",
                       c->latent_channels, c->latent_size, c->latent_size, latent_n);
    return da_loop_generate_with(p, opts, lo, da_loop_refiner_writer, (void *)refiner, queries, seeds,
                                 refine_seeds, n, trace, out_images, out_latents);
}
