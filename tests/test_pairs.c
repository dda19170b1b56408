/* Preference pairs (src/eval/pairs.c, `dalign pairs`) over tiny random
 * models: the file round trip, the stored latents and utilities against a
 * regeneration of the documented candidate stream through the pipeline and
 * the rater, ties, reproducibility (seeds, threads), different-prompt pairs,
 * the optional "style" key, the loader's checks and the command line
 * (--style included). */
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dalign.h"

static char g_dir[64];      /* temp directory: weights/ and outputs */
static char g_bin[1024];    /* build/<variant>/dalign, next to this suite */
static da_pipeline *g_pipe;

/* ---- fixtures ------------------------------------------------------------------ */

static const char *tmp_path(const char *name)
{
    static char buf[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/da_test_pairs_XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    snprintf(g_bin, sizeof g_bin, "%s", tu_cli_path());
    if (tu_tiny_weights(tmp_path("weights"))) return -1;
    return da_pipeline_load(&g_pipe, tmp_path("weights"), NULL) == DA_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    da_pipeline_free(g_pipe);
    tu_rm_tree(g_dir);
    return 0;
}

/* 4 pairs, 2 steps, chunks of 4 images: about half of the tiny models'
 * candidates tie, so a run spans several chunks and drops some ties */
static da_pairs_config small_config(void)
{
    da_pairs_config c = da_pairs_config_default();
    c.n = 4;
    c.opts.steps = 2;
    c.batch = 4;
    return c;
}

static void generate(const da_pairs_config *c, da_pairs *pr)
{
    if (da_pairs_generate(g_pipe, c, pr) != DA_OK) fail_msg("da_pairs_generate: %s", da_last_error());
}

static size_t latent_size(void) { return (size_t)g_pipe->vae->cfg.latent_channels * g_pipe->latent_h * g_pipe->latent_w; }

/* ---- the candidate stream, regenerated ---------------------------------------------- */

/* every labelled candidate's two images, regenerated through the pipeline
 * in the documented chunks of c->batch images, with their utilities */
typedef struct regen {
    long n_images;
    char *prompts;        /* (n_images, DA_CAPTION_MAX) */
    uint64_t *seeds;      /* (n_images) */
    float *latents;       /* (n_images, C, h, w) */
    float *utility;       /* (n_images) */
} regen;

static void regen_run(const da_pairs_config *c, long candidates, regen *r)
{
    size_t per = latent_size();
    r->n_images = (2 * candidates + c->batch - 1) / c->batch * c->batch;
    r->prompts = malloc((size_t)r->n_images * DA_CAPTION_MAX);
    r->seeds = malloc((size_t)r->n_images * sizeof *r->seeds);
    r->latents = malloc((size_t)r->n_images * per * sizeof(float));
    r->utility = malloc((size_t)r->n_images * sizeof(float));
    float *images = malloc((size_t)c->batch * DA_IMG_FLOATS * sizeof(float));
    const char **rows = malloc((size_t)r->n_images * sizeof *rows);
    assert_true(r->prompts && r->seeds && r->latents && r->utility && images && rows);
    assert_int_equal(da_pairs_plan(c, r->n_images, r->prompts, r->seeds), DA_OK);
    for (long i = 0; i < r->n_images; i++) rows[i] = r->prompts + (size_t)i * DA_CAPTION_MAX;
    for (long j0 = 0; j0 < r->n_images; j0 += c->batch) {
        assert_int_equal(da_pipeline_generate(g_pipe, &c->opts, rows + j0, NULL, r->seeds + j0, c->batch, NULL, NULL,
                                              images, r->latents + (size_t)j0 * per),
                         DA_OK);
        for (int b = 0; b < c->batch; b++) {
            da_rater_terms t;
            assert_int_equal(da_rater_utility(&c->rater, images + (size_t)b * DA_IMG_FLOATS, rows[j0 + b], &t), DA_OK);
            assert_true(t.parsed);   /* the stream's prompts are grammar captions */
            r->utility[j0 + b] = t.utility;
        }
    }
    free(images);
    free(rows);
}

static void regen_free(regen *r)
{
    free(r->prompts);
    free(r->seeds);
    free(r->latents);
    free(r->utility);
}

/* The stored pairs are the pipeline's images of the stored prompts and
 * seeds (bit for bit, same chunks), their utilities are the rater's, the
 * dropped candidates are exactly the ties and the kept ones are not. */
static void check_against_pipeline(const da_pairs_config *c, const da_pairs *pr)
{
    regen r;
    regen_run(c, pr->candidates, &r);
    size_t per = latent_size();
    int kept = 0;
    for (long cand = 0; cand < pr->candidates; cand++) {
        float ua = r.utility[2 * cand], ub = r.utility[2 * cand + 1];
        int tie = fabsf(ua - ub) < c->rater.tie_margin || ua == ub;
        int stored = kept < pr->n && pr->candidate[kept] == cand;
        if (tie == stored) fail_msg("candidate %ld: u_a %g, u_b %g, tie %d, stored %d", cand, ua, ub, tie, stored);
        if (!stored) continue;
        int i = kept++;
        assert_true(da_pairs_image_seed(c->seed, cand, 0) == r.seeds[2 * cand]);
        assert_true(da_pairs_image_seed(c->seed, cand, 1) == r.seeds[2 * cand + 1]);
        long w = pr->seeds_w[i] == r.seeds[2 * cand] ? 2 * cand : 2 * cand + 1, l = w ^ 1;
        if (pr->seeds_w[i] != r.seeds[w] || pr->seeds_l[i] != r.seeds[l])
            fail_msg("pair %d: seeds %llu, %llu are not candidate %ld's", i, (unsigned long long)pr->seeds_w[i],
                     (unsigned long long)pr->seeds_l[i], cand);
        assert_string_equal(pr->prompts_w[i], r.prompts + (size_t)w * DA_CAPTION_MAX);
        assert_string_equal(pr->prompts_l[i], r.prompts + (size_t)l * DA_CAPTION_MAX);
        tu_assert_bits("latents_w", pr->latents_w + (size_t)i * per, r.latents + (size_t)w * per, per);
        tu_assert_bits("latents_l", pr->latents_l + (size_t)i * per, r.latents + (size_t)l * per, per);
        tu_assert_bits("utility_w", &pr->utility_w[i], &r.utility[w], 1);
        tu_assert_bits("utility_l", &pr->utility_l[i], &r.utility[l], 1);
        float p = da_rater_prob(&c->rater, pr->utility_w[i], pr->utility_l[i]);
        tu_assert_bits("prob_w", &pr->prob_w[i], &p, 1);
    }
    assert_int_equal(kept, pr->n);
    assert_int_equal(pr->ties_dropped, pr->candidates - pr->n);
    regen_free(&r);
}

/* ---- tests ------------------------------------------------------------------------ */

static void assert_same_pairs(const da_pairs *a, const da_pairs *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->channels, b->channels);
    assert_int_equal(a->height, b->height);
    assert_int_equal(a->width, b->width);
    size_t per = (size_t)a->channels * a->height * a->width;
    tu_assert_bits("latents_w", a->latents_w, b->latents_w, a->n * per);
    tu_assert_bits("latents_l", a->latents_l, b->latents_l, a->n * per);
    tu_assert_bits("utility_w", a->utility_w, b->utility_w, a->n);
    tu_assert_bits("utility_l", a->utility_l, b->utility_l, a->n);
    tu_assert_bits("prob_w", a->prob_w, b->prob_w, a->n);
    for (int i = 0; i < a->n; i++) {
        assert_string_equal(a->prompts_w[i], b->prompts_w[i]);
        assert_string_equal(a->prompts_l[i], b->prompts_l[i]);
        assert_true(a->seeds_w[i] == b->seeds_w[i] && a->seeds_l[i] == b->seeds_l[i]);
        assert_true(a->candidate[i] == b->candidate[i]);
    }
    assert_true(a->seed == b->seed && a->split == b->split && a->batch == b->batch);
    assert_true(a->opts.sampler == b->opts.sampler && a->opts.steps == b->opts.steps);
    assert_true(a->opts.cfg == b->opts.cfg && a->opts.eta == b->opts.eta);
    assert_string_equal(a->unet, b->unet);
    assert_string_equal(a->weights, b->weights);
    assert_true(a->vae_scale_factor == b->vae_scale_factor);
    assert_true(a->different_prompt_fraction == b->different_prompt_fraction);
    assert_true(a->candidates == b->candidates && a->ties_dropped == b->ties_dropped);
    assert_memory_equal(&a->rater, &b->rater, sizeof a->rater);
    assert_string_equal(a->style, b->style);
}

/* (a) write, read back: every tensor, prompt, seed and setting */
static void test_round_trip(void **state)
{
    (void)state;
    da_pairs_config c = small_config();
    c.seed = 0xfedcba9876543210ull;   /* a seed past 2^63 survives the decimal strings */
    c.opts.sampler = DA_SAMPLER_DDIM;
    c.opts.eta = 0.5f;
    c.opts.cfg = 2.5f;
    c.split = DA_SPLIT_HELDOUT;
    c.unet_name = "unet";
    c.weights = "some/weights";
    da_pairs a, b;
    generate(&c, &a);
    assert_string_equal(a.weights, "some/weights");
    assert_true(a.vae_scale_factor == g_pipe->vae->cfg.scale_factor);
    assert_int_equal(a.n, 4);
    assert_true(a.candidates >= 4 && a.ties_dropped == a.candidates - 4);
    assert_int_equal(da_pairs_save(&a, tmp_path("rt.safetensors")), DA_OK);
    if (da_pairs_load(tmp_path("rt.safetensors"), &b) != DA_OK) fail_msg("%s", da_last_error());
    assert_same_pairs(&a, &b);
    assert_true(b.seed == 0xfedcba9876543210ull && b.split == DA_SPLIT_HELDOUT && b.opts.eta == 0.5f);
    /* the layout's names and shapes, read with the plain safetensors reader */
    da_safetensors *st;
    assert_int_equal(da_st_open(tmp_path("rt.safetensors"), &st), DA_OK);
    const da_st_tensor *t = da_st_find(st, "latents_w");
    assert_non_null(t);
    assert_true(t->ndim == 4 && t->shape[0] == 4 && t->shape[1] == g_pipe->vae->cfg.latent_channels &&
                t->shape[2] == g_pipe->latent_h && t->shape[3] == g_pipe->latent_w);
    assert_string_equal(da_st_meta_get(st, "format"), DA_PAIRS_FORMAT);
    assert_string_equal(da_st_meta_get(st, "split"), "heldout");
    assert_string_equal(da_st_meta_get(st, "seed"), "18364758544493064720");
    assert_string_equal(da_st_meta_get(st, "weights"), "some/weights");
    char scale[32];
    snprintf(scale, sizeof scale, "%.9g", (double)g_pipe->vae->cfg.scale_factor);
    assert_string_equal(da_st_meta_get(st, "vae_scale_factor"), scale);
    da_st_close(st);
    da_pairs_free(&a);
    da_pairs_free(&b);
}

/* (b) + (c) the stored data are the pipeline's and the rater's; also after
 * a file round trip */
static void test_pipeline_and_rater(void **state)
{
    (void)state;
    da_pairs_config c = small_config();
    da_pairs a, b;
    generate(&c, &a);
    assert_true(a.ties_dropped > 0);   /* the tiny models tie often: the check below sees both kinds */
    check_against_pipeline(&c, &a);
    assert_int_equal(da_pairs_save(&a, tmp_path("pr.safetensors")), DA_OK);
    assert_int_equal(da_pairs_load(tmp_path("pr.safetensors"), &b), DA_OK);
    check_against_pipeline(&c, &b);
    /* a nearly noiseless rater (sigmoid(du / 1e-4) rounds to 1 for any du
     * beyond the tie margin): the winner is always the higher utility, so
     * winner and loser are not swapped anywhere */
    da_pairs_config q = small_config();
    q.rater.temperature = 1e-4f;
    da_pairs z;
    generate(&q, &z);
    for (int i = 0; i < z.n; i++)
        if (!(z.utility_w[i] > z.utility_l[i]) || z.prob_w[i] != 1.0f)
            fail_msg("pair %d: u_w %g, u_l %g, prob %g", i, z.utility_w[i], z.utility_l[i], z.prob_w[i]);
    da_pairs_free(&a);
    da_pairs_free(&b);
    da_pairs_free(&z);
}

/* (d) same seed: the same file bytes, for 1 and 2 threads; another seed:
 * other prompts and latents */
static void test_reproducible(void **state)
{
    (void)state;
    da_pairs_config c = small_config();
    c.batch = 3;   /* odd: a candidate's A and B fall in different chunks */
    int saved = da_get_threads();
    const char *f[3] = {"d1.safetensors", "d2.safetensors", "d3.safetensors"};
    for (int k = 0; k < 3; k++) {
        da_set_threads(k == 0 ? 1 : 2);
        c.seed = k < 2 ? 5 : 6;
        da_pairs p;
        generate(&c, &p);
        assert_int_equal(da_pairs_save(&p, tmp_path(f[k])), DA_OK);
        if (k == 0) check_against_pipeline(&c, &p);
        da_pairs_free(&p);
    }
    da_set_threads(saved);
    size_t n1, n2, n3;
    char *b1 = tu_slurp(tmp_path(f[0]), &n1), *b2 = tu_slurp(tmp_path(f[1]), &n2);
    char *b3 = tu_slurp(tmp_path(f[2]), &n3);
    assert_true(n1 == n2 && !memcmp(b1, b2, n1));
    assert_true(n1 != n3 || memcmp(b1, b3, n1));
    da_pairs x, y;
    assert_int_equal(da_pairs_load(tmp_path(f[0]), &x), DA_OK);
    assert_int_equal(da_pairs_load(tmp_path(f[2]), &y), DA_OK);
    int same_latent = 0, same_seed = 0;
    size_t per = latent_size();
    for (int i = 0; i < x.n; i++) {
        same_latent += !memcmp(x.latents_w + i * per, y.latents_w + i * per, per * sizeof(float));
        same_seed += x.seeds_w[i] == y.seeds_w[i];
    }
    assert_int_equal(same_latent, 0);
    assert_int_equal(same_seed, 0);
    free(b1);
    free(b2);
    free(b3);
    da_pairs_free(&x);
    da_pairs_free(&y);
}

/* (e) ties: with a wide tie margin most candidates tie; none is stored, the
 * count is in the file; a rater that ties everything exhausts the budget */
static void test_ties_dropped(void **state)
{
    (void)state;
    da_pairs_config c = small_config();
    c.rater.tie_margin = 1.0f;   /* the tiny models' utilities mostly differ by less */
    c.max_attempts = 50;
    da_pairs p, q;
    generate(&c, &p);
    assert_true(p.ties_dropped > 0);
    for (int i = 0; i < p.n; i++)
        if (!(fabsf(p.utility_w[i] - p.utility_l[i]) >= c.rater.tie_margin))
            fail_msg("pair %d is a tie: u_w %g, u_l %g", i, p.utility_w[i], p.utility_l[i]);
    check_against_pipeline(&c, &p);
    assert_int_equal(da_pairs_save(&p, tmp_path("ties.safetensors")), DA_OK);
    assert_int_equal(da_pairs_load(tmp_path("ties.safetensors"), &q), DA_OK);
    assert_true(q.ties_dropped == p.ties_dropped && q.candidates == p.candidates);
    da_safetensors *st;
    assert_int_equal(da_st_open(tmp_path("ties.safetensors"), &st), DA_OK);
    assert_true(atol(da_st_meta_get(st, "ties_dropped")) > 0);
    da_st_close(st);

    da_pairs_config all = small_config();
    all.rater.tie_margin = 1e9f;   /* every candidate ties */
    all.max_attempts = 2;
    da_pairs z;
    assert_int_equal(da_pairs_generate(g_pipe, &all, &z), DA_ERR_RANGE);
    assert_non_null(strstr(da_last_error(), "only 0 of 4 pairs after 8 candidates"));
    da_pairs_free(&z);
    da_pairs_free(&p);
    da_pairs_free(&q);
}

static int same_spec(const char *a, const char *b)
{
    da_scene x, y;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    assert_int_equal(da_parse_prompt(a, &x), DA_OK);
    assert_int_equal(da_parse_prompt(b, &y), DA_OK);
    return !memcmp(&x, &y, sizeof x);
}

/* (f) the different-prompt fraction: 1 -> every pair asks two different
 * things, 0 -> never; A's prompts do not depend on it */
static void test_different_prompts(void **state)
{
    (void)state;
    da_pairs_config c = small_config();
    c.different_prompt_fraction = 1.0f;
    da_pairs p;
    generate(&c, &p);
    for (int i = 0; i < p.n; i++)
        if (!strcmp(p.prompts_w[i], p.prompts_l[i]) || same_spec(p.prompts_w[i], p.prompts_l[i]))
            fail_msg("pair %d: '%s' and '%s'", i, p.prompts_w[i], p.prompts_l[i]);
    check_against_pipeline(&c, &p);   /* each image is rated against its own prompt */
    da_pairs_free(&p);
    c.different_prompt_fraction = 0.0f;
    generate(&c, &p);
    for (int i = 0; i < p.n; i++) assert_string_equal(p.prompts_w[i], p.prompts_l[i]);
    da_pairs_free(&p);

    enum { N = 40 };
    static char t0[N][DA_CAPTION_MAX], t1[N][DA_CAPTION_MAX], th[N][DA_CAPTION_MAX];
    uint64_t s0[N], s1[N], sh[N];
    c.different_prompt_fraction = 0.0f;
    assert_int_equal(da_pairs_plan(&c, N, t0[0], s0), DA_OK);
    c.different_prompt_fraction = 1.0f;
    assert_int_equal(da_pairs_plan(&c, N, t1[0], s1), DA_OK);
    c.different_prompt_fraction = 0.5f;
    assert_int_equal(da_pairs_plan(&c, N, th[0], sh), DA_OK);
    int differ = 0;
    for (int i = 0; i < N; i += 2) {
        assert_string_equal(t0[i], t1[i]);
        assert_string_equal(t0[i], th[i]);
        assert_string_equal(t0[i], t0[i + 1]);
        assert_true(s0[i] == s1[i] && s0[i + 1] == sh[i + 1]);
        differ += strcmp(th[i], th[i + 1]) != 0;
    }
    /* 20 candidates at F = 0.5: P(all same or all different) = 2^-19 */
    assert_true(differ > 0 && differ < N / 2);
}

/* the image seeds of docs/pairs.md, computed there in Python: a
 * reimplementation that follows the text gets these numbers */
static void test_seed_formula(void **state)
{
    (void)state;
    assert_true(da_pairs_image_seed(0, 0, 0) == 233698763u);
    assert_true(da_pairs_image_seed(0, 5, 1) == 233698774u);
    assert_true(da_pairs_image_seed(12345, 7, 0) == 4155381054u);
}

/* ---- the loader's checks ------------------------------------------------------------ */

/* a copy of src with metadata `key` set to `value` (NULL: removed), the
 * tensor `cut` (NULL: none) one row shorter and element `at` of tensor
 * `poke` (NULL: none) set to x */
static void rewrite_poke(const char *src, const char *dst, const char *key, const char *value, const char *cut,
                         const char *poke, int at, float x)
{
    da_safetensors *st;
    assert_int_equal(da_st_open(src, &st), DA_OK);
    da_st_entry e[8];
    float *data[8];
    assert_true(st->n_tensors <= 8 && st->n_meta < 32);
    for (int i = 0; i < st->n_tensors; i++) {
        const da_st_tensor *t = &st->tensors[i];
        data[i] = malloc(t->numel * sizeof(float) + 1);
        da_st_to_f32(st, t, data[i]);
        e[i].name = t->name;
        e[i].data = data[i];
        e[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) e[i].shape[d] = (int)t->shape[d];
        if (cut && !strcmp(cut, t->name)) e[i].shape[0]--;
        if (poke && !strcmp(poke, t->name)) data[i][at] = x;
    }
    da_st_meta m[32];
    int nm = 0, found = 0;
    for (int i = 0; i < st->n_meta; i++) {
        int hit = key && !strcmp(st->meta[i].key, key);
        found |= hit;
        if (hit && !value) continue;
        m[nm].key = st->meta[i].key;
        m[nm++].value = hit ? (char *)value : st->meta[i].value;
    }
    if (key && value && !found) {
        m[nm].key = (char *)key;
        m[nm++].value = (char *)value;
    }
    assert_int_equal(da_st_write(dst, e, st->n_tensors, m, nm), DA_OK);
    for (int i = 0; i < st->n_tensors; i++) free(data[i]);
    da_st_close(st);
}

static void rewrite(const char *src, const char *dst, const char *key, const char *value, const char *cut)
{
    rewrite_poke(src, dst, key, value, cut, NULL, 0, 0.0f);
}

/* load must fail with `status` and a message naming the file and `what` */
static void expect_reject(const char *file, da_status status, const char *what)
{
    da_pairs p;
    da_status s = da_pairs_load(file, &p);
    if (s != status) fail_msg("%s: status %d, expected %d (%s)", file, s, status, da_last_error());
    if (!strstr(da_last_error(), file) || !strstr(da_last_error(), what))
        fail_msg("message '%s' does not name '%s' and '%s'", da_last_error(), file, what);
    assert_null(p.latents_w);   /* nothing left allocated */
    da_pairs_free(&p);
}

static void test_loader_rejects(void **state)
{
    (void)state;
    da_pairs_config c = small_config();
    da_pairs p;
    generate(&c, &p);
    const char *good = tmp_path("good.safetensors");
    assert_int_equal(da_pairs_save(&p, good), DA_OK);
    da_pairs_free(&p);
    const char *bad = tmp_path("bad.safetensors");

    expect_reject(tmp_path("missing.safetensors"), DA_ERR_IO, "missing.safetensors");
    rewrite(good, bad, "format", "dalign-pairs-0", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "dalign-pairs-0");
    rewrite(good, bad, "format", NULL, NULL);
    expect_reject(bad, DA_ERR_FORMAT, "format");
    rewrite(good, bad, "n", "3", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "latents_w' has 4 rows but metadata n is 3");
    rewrite(good, bad, NULL, NULL, "latents_l");
    expect_reject(bad, DA_ERR_FORMAT, "latents_l' has 3 rows");
    rewrite(good, bad, NULL, NULL, "utility_w");
    expect_reject(bad, DA_ERR_FORMAT, "utility_w");
    rewrite(good, bad, "prompts_l", "[\"a red circle\", \"a blue square\", \"a red circle\"]", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "'prompts_l' must be a JSON array of 4 items (n), has 3");
    rewrite(good, bad, "prompts_w", "[\"a red circle\", \"a red purpel circle\", \"a red circle\", \"a red circle\"]",
            NULL);
    expect_reject(bad, DA_ERR_FORMAT, "prompts_w[1] 'a red purpel circle'");
    assert_non_null(strstr(da_last_error(), "purpel"));
    rewrite(good, bad, "seeds_w", "[1, 2, 3, 4]", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "seeds_w[0]");
    rewrite(good, bad, "seed", "-1", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "metadata 'seed' = '-1'");
    rewrite(good, bad, "steps", NULL, NULL);
    expect_reject(bad, DA_ERR_FORMAT, "'steps' is missing");
    rewrite(good, bad, "ties_dropped", "12345", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "ties_dropped");
    /* the generator's own checks, run on the settings read back */
    rewrite(good, bad, "eta", "-1", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "eta -1 must be >= 0");
    const char *eta = tmp_path("eta.safetensors");
    rewrite(good, eta, "eta", "0.5", NULL);   /* fine for DDIM, */
    rewrite(eta, bad, "sampler", "euler", NULL);   /* not for Euler */
    expect_reject(bad, DA_ERR_FORMAT, "eta is a DDIM option");
    rewrite(good, bad, "cfg", "1e39", NULL);   /* strtof: inf */
    expect_reject(bad, DA_ERR_FORMAT, "'cfg' = '1e39' is not a finite number");
    const char *rater = "{\"w_faith\": 8, \"w_size\": 1, \"w_centre\": 1, \"w_contrast\": 0.5, "
                        "\"temperature\": %s, \"tie_margin\": 0.05}";
    char rv[256];
    snprintf(rv, sizeof rv, rater, "0");
    rewrite(good, bad, "rater", rv, NULL);
    expect_reject(bad, DA_ERR_FORMAT, "rater temperature 0 must be > 0");
    snprintf(rv, sizeof rv, rater, "1e39");
    rewrite(good, bad, "rater", rv, NULL);
    expect_reject(bad, DA_ERR_FORMAT, "'temperature' = 1e39 is not a finite float");
    rewrite(good, bad, "candidate_index", "[0, 2, 1, 3]", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "candidate_index[2]");
    rewrite(good, bad, "candidate_index", "[0, 1, 2, 100000]", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "candidate_index[3] = 100000 is not below candidates");
    rewrite_poke(good, bad, NULL, NULL, NULL, "prob_w", 1, 1.5f);
    expect_reject(bad, DA_ERR_FORMAT, "prob_w[1] = 1.5 is not a probability");
    rewrite_poke(good, bad, NULL, NULL, NULL, "utility_l", 2, INFINITY);
    expect_reject(bad, DA_ERR_FORMAT, "utility_l[2] = inf is not finite");
    rewrite(good, bad, "vae_scale_factor", NULL, NULL);
    expect_reject(bad, DA_ERR_FORMAT, "'vae_scale_factor' is missing");
    rewrite(good, bad, "vae_scale_factor", "0", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "vae_scale_factor' 0 must be > 0");
    rewrite(good, bad, "weights", NULL, NULL);
    expect_reject(bad, DA_ERR_FORMAT, "'weights' is missing");
    /* not a safetensors file: the parser's message gets the path in front */
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("not a pairs file", f);
    fclose(f);
    expect_reject(bad, DA_ERR_FORMAT, "header length");
    /* a path that is a word of the message ("a" is in almost every one)
     * still gets named: the prefix depends on where the error came from */
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(g_dir), 0);
    rewrite("good.safetensors", "a", "eta", "-1", NULL);
    da_status s = da_pairs_load("a", &p);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", da_last_error());
    da_pairs_free(&p);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(s, DA_ERR_FORMAT);
    if (strncmp(msg, "a: ", 3)) fail_msg("message '%s' does not start with the path 'a'", msg);
    /* the untouched copy still loads: the rewriting itself is sound */
    rewrite(good, bad, NULL, NULL, NULL);
    assert_int_equal(da_pairs_load(bad, &p), DA_OK);
    da_pairs_free(&p);
}

/* The "style" key: written only for style pairs and read back; a file
 * without it (every rater-labelled file, also those from before the key)
 * loads with style "" and saves to the same bytes; an unknown style is
 * refused on both sides. */
static void test_style_key(void **state)
{
    (void)state;
    da_pairs_config c = small_config();
    da_pairs a, b;
    generate(&c, &a);
    assert_string_equal(a.style, "");   /* rater-labelled */
    const char *old = tmp_path("old.safetensors"), *again = tmp_path("again.safetensors");
    assert_int_equal(da_pairs_save(&a, old), DA_OK);
    da_safetensors *st;
    assert_int_equal(da_st_open(old, &st), DA_OK);
    assert_null(da_st_meta_get(st, "style"));   /* the old layout: no key */
    da_st_close(st);
    if (da_pairs_load(old, &b) != DA_OK) fail_msg("%s", da_last_error());
    assert_string_equal(b.style, "");
    assert_int_equal(da_pairs_save(&b, again), DA_OK);
    if (!tu_same_file(old, again)) fail_msg("an old-layout file saved again changed its bytes");
    da_pairs_free(&b);

    snprintf(a.style, sizeof a.style, "outline");   /* style pairs record their style */
    const char *styled = tmp_path("styled.safetensors");
    assert_int_equal(da_pairs_save(&a, styled), DA_OK);
    assert_int_equal(da_st_open(styled, &st), DA_OK);
    assert_string_equal(da_st_meta_get(st, "style"), "outline");
    da_st_close(st);
    if (da_pairs_load(styled, &b) != DA_OK) fail_msg("%s", da_last_error());
    assert_same_pairs(&a, &b);
    assert_string_equal(b.style, "outline");
    da_pairs_free(&b);

    const char *bad = tmp_path("bad_style.safetensors");
    rewrite(styled, bad, "style", "sketch", NULL);
    expect_reject(bad, DA_ERR_FORMAT, "metadata 'style' = 'sketch': expected plain or outline");
    snprintf(a.style, sizeof a.style, "sketch");
    assert_int_equal(da_pairs_save(&a, bad), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "sketch"));
    da_pairs_free(&a);
}

static void test_config_errors(void **state)
{
    (void)state;
    da_pairs_config d = da_pairs_config_default();
    assert_int_equal(da_pairs_config_check(&d), DA_OK);
    assert_true(d.split == DA_SPLIT_TRAIN && d.batch == 8 && d.opts.steps == 20 && d.opts.cfg == 3.0f &&
                d.different_prompt_fraction == 0.0f);
    da_pairs_config bad[10] = {d, d, d, d, d, d, d, d, d, d};
    bad[0].n = 0;
    bad[1].batch = 0;
    bad[2].different_prompt_fraction = 1.5f;
    bad[3].different_prompt_fraction = NAN;
    bad[4].opts.sampler = DA_SAMPLER_EULER;
    bad[4].opts.eta = 0.5f;   /* eta is DDIM's */
    bad[5].max_attempts = 0;
    bad[6].rater.temperature = 0.0f;
    bad[7].rater.w_size = INFINITY;
    bad[8].n = DA_PAIRS_MAX_N + 1;
    bad[9].weights = "w\xff";   /* not UTF-8: the metadata could not hold it */
    for (int i = 0; i < 10; i++) {
        da_pairs p;
        assert_int_equal(da_pairs_config_check(&bad[i]), DA_ERR_INVALID);
        assert_int_equal(da_pairs_generate(g_pipe, &bad[i], &p), DA_ERR_INVALID);
        da_pairs_free(&p);
    }
}

/* DA_PAIRS_MAX_N pairs at their worst (longest prompts of bytes that need
 * the most escaping, 20-digit seeds, the largest candidate indices, the
 * longest weights path) stay within the bound pairs.h works out, well under
 * Python safetensors' 100,000,000-byte header limit. */
static void test_header_bound(void **state)
{
    (void)state;
    enum { N = DA_PAIRS_MAX_N };
    da_pairs pr;
    memset(&pr, 0, sizeof pr);
    pr.n = N;
    pr.channels = pr.height = pr.width = 1;
    pr.latents_w = calloc(N, sizeof(float));
    pr.latents_l = calloc(N, sizeof(float));
    pr.utility_w = calloc(N, sizeof(float));
    pr.utility_l = calloc(N, sizeof(float));
    pr.prob_w = calloc(N, sizeof(float));
    pr.prompts_w = malloc(N * sizeof(char *));
    pr.prompts_l = malloc(N * sizeof(char *));
    pr.seeds_w = malloc(N * sizeof(uint64_t));
    pr.seeds_l = malloc(N * sizeof(uint64_t));
    pr.candidate = malloc(N * sizeof(long));
    char *worst = malloc(DA_CAPTION_MAX);
    assert_true(pr.latents_w && pr.latents_l && pr.utility_w && pr.utility_l && pr.prob_w && pr.prompts_w &&
                pr.prompts_l && pr.seeds_w && pr.seeds_l && pr.candidate && worst);
    for (int i = 0; i < DA_CAPTION_MAX - 1; i++) worst[i] = i % 2 ? '\x01' : '\xff';   /* \\u0001, \\u00ff */
    worst[DA_CAPTION_MAX - 1] = '\0';
    for (int i = 0; i < N; i++) {
        pr.prompts_w[i] = pr.prompts_l[i] = worst;
        pr.seeds_w[i] = pr.seeds_l[i] = UINT64_MAX;
        pr.candidate[i] = 1000L * N - N + i;   /* the last of max_attempts 1000 */
    }
    memset(pr.weights, '\x01', sizeof pr.weights - 1);
    snprintf(pr.unet, sizeof pr.unet, "unet");
    pr.candidates = 1000L * N;
    pr.ties_dropped = pr.candidates - N;
    pr.vae_scale_factor = 1.0f;
    pr.rater = da_rater_config_default();
    pr.opts = da_sample_opts_default();
    pr.batch = 8;
    const char *path = tmp_path("worst.safetensors");
    if (da_pairs_save(&pr, path) != DA_OK) fail_msg("%s", da_last_error());
    FILE *f = fopen(path, "rb");
    unsigned char b[8];
    assert_true(f && fread(b, 1, 8, f) == 8);
    fclose(f);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | b[i];
    if (hlen > (uint64_t)N * 2300 + 65536 || hlen >= 100000000u)
        fail_msg("header of %llu bytes for %d worst-case pairs", (unsigned long long)hlen, N);
    remove(path);
    da_pairs_free(&pr);   /* pr.text is NULL: the prompts all point at `worst` */
    free(worst);
}

/* ---- command line ---------------------------------------------------------------------- */

static int run_cli(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s pairs %s > %s 2> %s", tu_cli_cmd(), args, tmp_path("out.log"), tmp_path("err.log"));
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void assert_log_has(const char *log, const char *text)
{
    char *s = tu_slurp(tmp_path(log), NULL);
    if (!strstr(s, text)) fail_msg("%s lacks '%s':\n%s", log, text, s);
    free(s);
}

static void test_cli(void **state)
{
    (void)state;
    if (!g_bin[0]) skip();   /* the suite was run without the dalign binary next to it */
    char args[1024];
    char out[400];   /* tmp_path's buffers are reused by the calls below */
    snprintf(out, sizeof out, "%s", tmp_path("cli.safetensors"));
    snprintf(args, sizeof args, "--weights %s --n 3 --steps 2 --batch 4 --seed 9 --different-prompts 0.5 -o %s",
             tmp_path("weights"), out);
    assert_int_equal(run_cli(args), 0);
    assert_log_has("out.log", "pairs kept        3");
    assert_log_has("err.log", "pairs  3/3");
    da_pairs p;
    if (da_pairs_load(out, &p) != DA_OK) fail_msg("%s", da_last_error());
    assert_true(p.n == 3 && p.seed == 9 && p.batch == 4 && p.opts.steps == 2 && p.different_prompt_fraction == 0.5f);
    assert_string_equal(p.weights, tmp_path("weights"));
    assert_true(p.vae_scale_factor == g_pipe->vae->cfg.scale_factor);
    da_pairs_free(&p);
    snprintf(args, sizeof args, "--weights %s --n 3 --steps 2 --batch 4 -q -o %s", tmp_path("weights"), out);
    assert_int_equal(run_cli(args), 0);
    char *err = tu_slurp(tmp_path("err.log"), NULL);
    assert_string_equal(err, "");   /* -q: nothing on stderr */
    free(err);

    /* --style: style pairs, every candidate kept, both images of a pair under one prompt */
    snprintf(args, sizeof args, "--weights %s --n 3 --steps 2 --batch 2 --seed 4 --style outline -o %s",
             tmp_path("weights"), out);
    assert_int_equal(run_cli(args), 0);
    assert_log_has("out.log", "style pairs       3 (style outline");
    assert_log_has("out.log", "outline score     winner ");
    assert_log_has("err.log", "style pairs  3/3");
    assert_log_has("err.log", "style outline");
    if (da_pairs_load(out, &p) != DA_OK) fail_msg("%s", da_last_error());
    assert_string_equal(p.style, "outline");
    assert_true(p.n == 3 && p.candidates == 3 && p.ties_dropped == 0 && p.seed == 4 && p.batch == 2);
    for (int i = 0; i < p.n; i++) assert_string_equal(p.prompts_w[i], p.prompts_l[i]);
    da_pairs_free(&p);
    assert_int_equal(run_cli("--n 2 --style outline --different-prompts 0.5 -o x.safetensors"), 2);
    assert_log_has("err.log", "--different-prompts must be 0");
    assert_int_equal(run_cli("--n 2 --style sketch -o x.safetensors"), 2);
    assert_log_has("err.log", "sketch");

    assert_int_equal(run_cli("--help"), 0);
    assert_log_has("out.log", "Usage: dalign pairs");
    assert_log_has("out.log", "--style NAME");
    assert_int_equal(run_cli("--n 3"), 2);   /* no -o */
    assert_log_has("err.log", "-o FILE is required");
    assert_int_equal(run_cli("-o x.safetensors"), 2);   /* no --n */
    assert_int_equal(run_cli("--n 0 -o x.safetensors"), 2);
    assert_log_has("err.log", "--n");
    snprintf(args, sizeof args, "--n %d -o x.safetensors", DA_PAIRS_MAX_N + 1);
    assert_int_equal(run_cli(args), 2);
    assert_int_equal(run_cli("--n x -o x.safetensors"), 2);
    assert_int_equal(run_cli("--n 2 --different-prompts 1.5 -o x.safetensors"), 2);
    assert_int_equal(run_cli("--n 2 --split test -o x.safetensors"), 2);
    assert_int_equal(run_cli("--n 2 --sampler euler --eta 0.5 -o x.safetensors"), 2);
    assert_int_equal(run_cli("--n 2 --bogus 1 -o x.safetensors"), 2);
    assert_log_has("err.log", "--bogus");
    assert_int_equal(run_cli("--n 2 --batch"), 2);
    snprintf(args, sizeof args, "--weights %s --n 2 -o %s", tmp_path("nowhere"), tmp_path("x.safetensors"));
    assert_int_equal(run_cli(args), 1);
    assert_log_has("err.log", tmp_path("nowhere"));
    assert_int_equal(access(tmp_path("x.safetensors"), F_OK), -1);   /* no file from a failed run */
    /* an unwritable -o is found before the weights are even looked at */
    snprintf(args, sizeof args, "--weights %s --n 2 -o %s", tmp_path("nowhere"), tmp_path("nodir/x.safetensors"));
    assert_int_equal(run_cli(args), 1);
    assert_log_has("err.log", "cannot write -o ");
    assert_log_has("err.log", tmp_path("nodir/x.safetensors"));
    snprintf(args, sizeof args, "--weights %s --n 2 -o %s", tmp_path("nowhere"), g_dir);
    assert_int_equal(run_cli(args), 1);
    assert_log_has("err.log", "is a directory");
    DIR *d = opendir(g_dir);   /* and the probe left nothing behind */
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) fail_msg("left behind: %s", e->d_name);
    closedir(d);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_pipeline_and_rater),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_ties_dropped),
        cmocka_unit_test(test_different_prompts),
        cmocka_unit_test(test_seed_formula),
        cmocka_unit_test(test_loader_rejects),
        cmocka_unit_test(test_style_key),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_header_bound),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
