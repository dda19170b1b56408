/* The PromptLoop refiner: PyTorch parity (logits and every parameter
 * gradient), causality and padding invariances, generation (its key/value
 * cache against the teacher-forced forward, greedy = argmax, log-probs =
 * teacher forcing's, determinism over seeds, threads and batch
 * composition, the BOS .. EOS PAD... format), config/weights files, errors,
 * and the default config's size and cost. */
#include "test_util.h"
#include "core/fileio.h"              /* da_now_s */
#include "models/refiner_internal.h"  /* da_refiner_cached_logits */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the reduced config of tests/oracle/model_refiner.py */
static da_refiner_config oracle_config(void)
{
    da_refiner_config c = {.vocab_size = 20, .max_tokens = 8, .d_model = 32, .n_layers = 2, .n_heads = 4,
                           .mlp_ratio = 4, .latent_channels = 4, .latent_size = 8, .patch = 2,
                           .time_freq_dim = 16};
    return c;
}

/* One batch of refiner inputs, owned (free with batch_free). */
typedef struct batch {
    int B, M, T_out;
    float *x0, *timesteps;
    int *query, *prompt, *out;
    uint8_t *query_keep, *prompt_keep;
} batch;

static void batch_alloc(batch *b, const da_refiner_config *c, int B, int T_out)
{
    b->B = B; b->M = c->max_tokens; b->T_out = T_out;
    size_t n = (size_t)B * b->M;
    b->x0 = malloc((size_t)B * c->latent_channels * c->latent_size * c->latent_size * sizeof(float));
    b->timesteps = malloc((size_t)B * sizeof(float));
    b->query = calloc(n, sizeof(int)); b->prompt = calloc(n, sizeof(int));
    b->out = calloc((size_t)B * (T_out > 0 ? T_out : 1), sizeof(int));
    b->query_keep = calloc(n, 1); b->prompt_keep = calloc(n, 1);
}

static void batch_free(batch *b)
{
    free(b->x0); free(b->timesteps); free(b->query); free(b->prompt); free(b->out);
    free(b->query_keep); free(b->prompt_keep);
}

/* ids (B, M) as BOS w .. EOS PAD... with row lengths len[], words from u */
static void fill_rows(int *ids, uint8_t *keep, const int *len, int B, int M, int V, uint32_t seed)
{
    float *u = tu_alloc_fill((size_t)B * M, seed, 0.0f, 1.0f);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < M; j++) {
            int i = b * M + j;
            ids[i] = j == 0 ? DA_TOK_BOS : j == len[b] - 1 ? DA_TOK_EOS
                   : j < len[b] ? 3 + (int)(u[i] * (V - 3)) : DA_TOK_PAD;
            keep[i] = j < len[b];
        }
    free(u);
}

/* a random batch: padded query and prompt rows, BOS-led output rows */
static void random_batch(batch *b, const da_refiner_config *c, int B, int T_out, uint32_t seed)
{
    batch_alloc(b, c, B, T_out);
    int qlen[8], plen[8];
    for (int i = 0; i < B; i++) {
        qlen[i] = 2 + (i * 5 + 3) % (b->M - 1);
        plen[i] = 2 + (i * 3 + 6) % (b->M - 1);
    }
    fill_rows(b->query, b->query_keep, qlen, B, b->M, c->vocab_size, seed);
    fill_rows(b->prompt, b->prompt_keep, plen, B, b->M, c->vocab_size, seed + 1);
    tu_fill(b->x0, (size_t)B * c->latent_channels * c->latent_size * c->latent_size, seed + 2, -2.0f, 2.0f);
    for (int i = 0; i < B; i++) b->timesteps[i] = (float)((i * 337 + 50) % 1000);
    float *u = tu_alloc_fill((size_t)B * (T_out > 0 ? T_out : 1), seed + 3, 0.0f, 1.0f);
    for (int i = 0; i < B * T_out; i++) b->out[i] = i % T_out == 0 ? DA_TOK_BOS : 2 + (int)(u[i] * (c->vocab_size - 2));
    free(u);
}

static da_tensor *forward(da_tape *t, const da_refiner *m, const batch *b)
{
    return da_refiner_forward(t, m, b->x0, b->timesteps, b->query, b->query_keep, b->prompt, b->prompt_keep,
                              b->out, b->B, b->T_out);
}

static da_refiner *random_refiner(const da_refiner_config *c, int trainable, uint64_t seed)
{
    da_refiner *m = da_refiner_create(c, trainable);
    assert_non_null(m);
    da_rng rng;
    da_rng_seed(&rng, seed);
    da_refiner_init(m, &rng);
    return m;
}

/* ------------------------------------------------------------------------ */

static void ids_from_ref(da_safetensors *st, const char *name, int *ids, size_t n)
{
    float *f = tu_ref(st, name, n);
    for (size_t i = 0; i < n; i++) ids[i] = (int)f[i];
    free(f);
}

static void keep_from_ref(da_safetensors *st, const char *name, uint8_t *keep, size_t n)
{
    float *f = tu_ref(st, name, n);
    for (size_t i = 0; i < n; i++) keep[i] = f[i] != 0.0f;
    free(f);
}

/* Parity: logits and the gradient of sum(logits * R) w.r.t. every parameter,
 * with padded query and prompt rows. Tolerance 2e-5 of each tensor's scale,
 * as the text encoder (same layers, same f32-vs-f32 summation-order noise of
 * a few ulp; a wrong term shows up at 1e-2 or more); the 1e-2 floor covers
 * gradients that vanish in exact arithmetic (k_proj.bias, unused position
 * rows). */
static void test_refiner_vs_torch(void **state)
{
    (void)state;
    da_refiner_config cfg = oracle_config();
    da_refiner *m = da_refiner_create(&cfg, 1);
    assert_non_null(m);
    if (da_refiner_load(m, "tests/oracle/model_refiner_weights.safetensors"))
        fail_msg("load: %s", da_last_error());
    da_safetensors *st = tu_oracle("model_refiner");
    batch b;
    batch_alloc(&b, &cfg, 3, 6);
    size_t n = (size_t)b.B * b.M;
    free(b.x0); free(b.timesteps);
    b.x0 = tu_ref(st, "x0", (size_t)b.B * 4 * 8 * 8);
    b.timesteps = tu_ref(st, "timesteps", (size_t)b.B);
    ids_from_ref(st, "query_ids", b.query, n);
    ids_from_ref(st, "prompt_ids", b.prompt, n);
    ids_from_ref(st, "out_ids", b.out, (size_t)b.B * b.T_out);
    keep_from_ref(st, "query_keep", b.query_keep, n);
    keep_from_ref(st, "prompt_keep", b.prompt_keep, n);
    assert_int_equal(b.query_keep[2 * 8 + 2], 0);   /* the batch really has padding */

    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_tensor *logits = forward(&t, m, &b);
    assert_non_null(logits);
    assert_int_equal(logits->ndim, 3);
    assert_int_equal(logits->size, (size_t)3 * 6 * 20);
    tu_check_scaled(st, "logits", logits->data, logits->size, 2e-5, 0.0);
    float *r = tu_ref(st, "r_logits", logits->size);
    da_tape_backward_from(&t, logits, r);
    tu_compare_params(st, "grad.", &m->params, 2e-5, 1e-2);
    free(r);
    da_tape_free(&t);
    batch_free(&b);
    da_st_close(st);
    da_refiner_free(m);
}

/* Causal over the output: changing the last output token leaves every
 * earlier row of logits bit-identical. Key padding: any id in a PAD slot of
 * the query or the prompt leaves every logit bit-identical. */
static void test_refiner_causal_padding(void **state)
{
    (void)state;
    da_refiner_config cfg = oracle_config();
    da_refiner *m = random_refiner(&cfg, 0, 5);
    batch b;
    random_batch(&b, &cfg, 3, 6, 21u);
    int V = cfg.vocab_size, T = b.T_out;
    da_tape t;
    da_tape_init(&t, 1 << 20);
    da_tensor *ref = forward(&t, m, &b);
    assert_non_null(ref);

    for (int r = 0; r < b.B; r++) b.out[r * T + T - 1] = (b.out[r * T + T - 1] + 7) % V;
    da_tensor *later = forward(&t, m, &b);
    for (int r = 0; r < b.B; r++) {
        tu_assert_bits("earlier logits after a later token changed", later->data + (size_t)r * T * V,
                       ref->data + (size_t)r * T * V, (size_t)(T - 1) * V);
        /* the changed token's own row does change: the test can see a difference */
        assert_memory_not_equal(later->data + ((size_t)r * T + T - 1) * V, ref->data + ((size_t)r * T + T - 1) * V,
                                (size_t)V * sizeof(float));
    }
    for (int r = 0; r < b.B; r++) b.out[r * T + T - 1] = (b.out[r * T + T - 1] + V - 7) % V;

    int padded = 0;
    for (int i = 0; i < b.B * b.M; i++) {
        if (!b.query_keep[i]) { b.query[i] = 3 + i % (V - 3); padded++; }
        if (!b.prompt_keep[i]) { b.prompt[i] = 4 + i % (V - 4); padded++; }
    }
    assert_true(padded > 0);
    da_tensor *pads = forward(&t, m, &b);
    tu_assert_bits("logits with other ids in PAD slots", pads->data, ref->data, ref->size);
    da_tape_free(&t);
    batch_free(&b);
    da_refiner_free(m);
}

/* ------------------------------------------------------------------------ */

/* out (M): BOS, then tokens other than PAD/BOS up to an EOS, then PAD;
 * returns the index of the EOS */
/* what generation may write: the tokenizer's words and EOS (this file's
 * own rule, from dalign/data.h's ids; da_refiner_token_allowed must agree) */
static int writable(int v) { return v != DA_TOK_PAD && v != DA_TOK_BOS && v != DA_TOK_UNK; }

static int assert_format(const int *out, int M, int V)
{
    assert_int_equal(out[0], DA_TOK_BOS);
    int j = 1;
    while (j < M && out[j] != DA_TOK_EOS) {
        if (!writable(out[j]) || out[j] < 0 || out[j] >= V)
            fail_msg("token %d at slot %d inside a written prompt", out[j], j);
        j++;
    }
    if (j == M) fail_msg("no EOS in a written prompt");
    for (int k = j + 1; k < M; k++) assert_int_equal(out[k], DA_TOK_PAD);
    return j;
}

static da_status generate(const da_refiner *m, const batch *b, float temperature, uint64_t seed, int *out,
                          float *logprobs)
{
    da_rng rng;
    da_rng_seed(&rng, seed);
    return da_refiner_generate(m, b->x0, b->timesteps, b->query, b->query_keep, b->prompt, b->prompt_keep,
                               b->B, temperature, &rng, out, logprobs);
}

/* The cache against teacher forcing. With the portable GEMM every element
 * of every product is the k-ordered sum whatever the shape, so the cached
 * logits are the teacher-forced ones bit for bit. With OpenBLAS a GEMM of
 * one slot (or of the 66 of the first pass) may sum in another order than
 * the teacher-forced GEMM of all slots: f32 noise of a few ulp carried
 * through the layers, the same as the PyTorch parity's, hence its
 * tolerance, 2e-5 of the logits' scale (a wrong term, a missed mask or a
 * stale cache row shows up at 1e-2 or more; measured: under 1e-6). */
#define CACHE_TOL 2e-5

static int portable_gemm(void) { return strcmp(da_gemm_backend(), "portable") == 0; }

/* row r of b alone, its output out (T_out) */
static batch one_row(const batch *b, const da_refiner_config *c, int r, int *out, int T_out)
{
    batch one = *b;
    size_t M = (size_t)b->M;
    one.B = 1;
    one.x0 = b->x0 + (size_t)r * c->latent_channels * c->latent_size * c->latent_size;
    one.timesteps = b->timesteps + r;
    one.query = b->query + r * M; one.query_keep = b->query_keep + r * M;
    one.prompt = b->prompt + r * M; one.prompt_keep = b->prompt_keep + r * M;
    one.out = out;
    one.T_out = T_out;
    return one;
}

/* logits (T_out, V) of a one-row batch through the cache */
static void cached_logits(const da_refiner *m, const batch *one, float *logits)
{
    assert_int_equal(da_refiner_cached_logits(m, one->x0, one->timesteps[0], one->query, one->query_keep,
                                              one->prompt, one->prompt_keep, one->out, one->T_out, logits),
                     DA_OK);
}

/* |cached - teacher-forced| / scale over n logits, failing past CACHE_TOL
 * (or at any bit with the portable GEMM); returns the tolerance used */
static double check_cache(const char *what, const float *cached, const float *forced, size_t n)
{
    if (portable_gemm()) {
        tu_assert_bits(what, cached, forced, n);
        return 0.0;
    }
    double atol = CACHE_TOL * tu_max_abs(forced, n);
    tu_assert_close(what, cached, forced, n, atol, 0.0);
    return atol;
}

/* The cached logits of every prefix of random outputs (all M slots, padded
 * query and prompt rows) against da_refiner_forward, on the reduced config
 * and on the default (3 layers, the 89-slot sequence); a row alone in the
 * teacher-forced batch and in a batch of B give the same comparison. */
static void cache_vs_forward(const da_refiner_config *cfg, int B, uint32_t seed)
{
    da_refiner *m = random_refiner(cfg, 0, seed);
    batch b;
    random_batch(&b, cfg, B, cfg->max_tokens, seed + 1);
    int M = b.M, V = cfg->vocab_size;
    da_tape t;
    da_tape_init(&t, 1 << 22);
    da_tensor *forced = forward(&t, m, &b);
    assert_non_null(forced);
    float *cached = malloc((size_t)M * V * sizeof(float));
    double worst = 0.0;
    for (int r = 0; r < B; r++) {
        batch one = one_row(&b, cfg, r, b.out + r * M, M);
        cached_logits(m, &one, cached);
        const float *f = forced->data + (size_t)r * M * V;
        check_cache("cached logits vs teacher forcing", cached, f, (size_t)M * V);
        double scale = tu_max_abs(f, (size_t)M * V);
        for (size_t i = 0; i < (size_t)M * V; i++) worst = fmax(worst, fabs((double)cached[i] - f[i]) / scale);
    }
    printf("# cache vs teacher forcing (d %d, %d layers, %s GEMM): max |diff| / scale %.2g\n", cfg->d_model,
           cfg->n_layers, da_gemm_backend(), worst);
    free(cached);
    da_tape_free(&t);
    batch_free(&b);
    da_refiner_free(m);
}

static void test_refiner_cache(void **state)
{
    (void)state;
    da_refiner_config small = oracle_config(), def = da_refiner_config_default();
    cache_vs_forward(&small, 3, 81u);
    cache_vs_forward(&def, 2, 83u);
}

/* the argmax over the writable tokens, its log-probability under
 * the softmax over those tokens at temperature temp (the sampler's
 * distribution), and the gap between the two largest of them */
static int allowed_argmax(const float *logits, int V, double temp, double *logprob, double *margin)
{
    int best = DA_TOK_EOS;
    double mx = -INFINITY, second = -INFINITY, z = 0.0;
    for (int v = DA_TOK_EOS; v < V; v++) {
        if (!writable(v)) continue;
        if (logits[v] > logits[best]) best = v;
        if (logits[v] > mx) second = mx, mx = logits[v];
        else if (logits[v] > second) second = logits[v];
    }
    for (int v = DA_TOK_EOS; v < V; v++)
        if (writable(v)) z += exp((logits[v] - mx) / temp);
    *logprob = (logits[best] - mx) / temp - log(z);
    *margin = mx - second;
    return best;
}

/* log-probability of token v under the sampler's distribution at temp */
static double allowed_logprob(const float *logits, int V, double temp, int v)
{
    double mx = -INFINITY, z = 0.0;
    for (int u = DA_TOK_EOS; u < V; u++)
        if (writable(u)) mx = fmax(mx, logits[u]);
    for (int u = DA_TOK_EOS; u < V; u++)
        if (writable(u)) z += exp((logits[u] - mx) / temp);
    return (logits[v] - mx) / temp - log(z);
}

/* Greedy: each written token is the argmax of the cached logits on the
 * prefix before it (exactly: generation computes those same logits), and
 * the argmax of the teacher-forced logits wherever their top two are
 * further apart than the cache tolerance (everywhere with the portable
 * GEMM); the forced EOS aside. The log-prob is the sum of the chosen
 * tokens' log-probs. Also: the format and a forced EOS at the last slot for
 * rows that never stop by themselves. */
static void test_refiner_greedy(void **state)
{
    (void)state;
    da_refiner_config cfg = oracle_config();
    da_refiner *m = random_refiner(&cfg, 0, 7);
    batch b;
    random_batch(&b, &cfg, 3, 1, 31u);
    int M = b.M, V = cfg.vocab_size;
    int out[3 * 8], checked = 0;
    float lp[3], cached[8 * 20];
    assert_int_equal(generate(m, &b, 0.0f, 1, out, lp), DA_OK);
    da_tape t;
    da_tape_init(&t, 1 << 20);
    for (int r = 0; r < b.B; r++) {
        int eos = assert_format(out + r * M, M, V);
        batch one = one_row(&b, &cfg, r, out + r * M, eos);   /* teacher-forced on its own output */
        da_tensor *logits = forward(&t, m, &one);
        assert_non_null(logits);
        cached_logits(m, &one, cached);
        double atol = check_cache("greedy: cached vs teacher-forced logits", cached, logits->data, logits->size);
        double sum = 0.0, l, gap;
        for (int j = 1; j <= eos && j < M - 1; j++) {
            int want = allowed_argmax(cached + (size_t)(j - 1) * V, V, 1.0, &l, &gap);
            assert_int_equal(want, out[r * M + j]);
            sum += l;
            int forced = allowed_argmax(logits->data + (size_t)(j - 1) * V, V, 1.0, &l, &gap);
            if (gap > 2.0 * atol) {
                assert_int_equal(forced, out[r * M + j]);
                checked++;
            }
        }
        assert_float_equal(lp[r], sum, 1e-4 * (1.0 + fabs(sum)));
    }
    assert_true(checked >= b.B);   /* the teacher-forced argmax was checked somewhere in every row */
    da_tape_free(&t);
    batch_free(&b);
    da_refiner_free(m);
}

/* Sampling's log-probs are what a trainer recomputes by teacher forcing
 * (docs/promptloop.md): per row, the sum over the sampled tokens (the
 * forced EOS aside) of log-softmax over ids >= 2 of the teacher-forced
 * logits / temperature. Default config, temperatures 1 and 0.5. Tolerance
 * 1e-5 (1 + |sum|): a float sum of up to 22 terms (its rounding ~1e-7 of
 * the sum), each off by the cache's few ulp of the logits' scale and
 * da_expf/da_logf's last ulp against libm's doubles; measured: ~1e-7. */
static void test_refiner_logprobs(void **state)
{
    (void)state;
    da_refiner_config cfg = da_refiner_config_default();
    da_refiner *m = random_refiner(&cfg, 0, 15);
    batch b;
    random_batch(&b, &cfg, 4, 1, 91u);
    int M = b.M, V = cfg.vocab_size;
    int out[4 * 24];
    float lp[4];
    const float temps[2] = {1.0f, 0.5f};
    da_tape t;
    da_tape_init(&t, 1 << 22);
    double worst = 0.0;
    for (int k = 0; k < 2; k++) {
        assert_int_equal(generate(m, &b, temps[k], 17 + k, out, lp), DA_OK);
        for (int r = 0; r < b.B; r++) {
            int eos = assert_format(out + r * M, M, V);
            batch one = one_row(&b, &cfg, r, out + r * M, eos);
            da_tensor *logits = forward(&t, m, &one);
            assert_non_null(logits);
            double sum = 0.0;
            for (int j = 1; j <= eos && j < M - 1; j++)
                sum += allowed_logprob(logits->data + (size_t)(j - 1) * V, V, temps[k], out[r * M + j]);
            assert_true(sum < 0.0);
            assert_float_equal(lp[r], sum, 1e-5 * (1.0 + fabs(sum)));
            worst = fmax(worst, fabs(lp[r] - sum) / (1.0 + fabs(sum)));
        }
    }
    printf("# log-probs vs teacher forcing: max |diff| / (1 + |sum|) %.2g\n", worst);
    da_tape_free(&t);
    batch_free(&b);
    da_refiner_free(m);
}

/* Sampling: the format for many seeds; same seed -> same tokens and
 * log-probs; another seed -> other tokens (for some row); a batch of 3 gives
 * what three single-row calls give, row b with the generator advanced by b
 * seeds (the documented order). */
static void test_refiner_sampling(void **state)
{
    (void)state;
    da_refiner_config cfg = oracle_config();
    da_refiner *m = random_refiner(&cfg, 0, 9);
    batch b;
    random_batch(&b, &cfg, 3, 1, 41u);
    int M = b.M, V = cfg.vocab_size;
    int out[3 * 8], again[3 * 8], other[3 * 8], one_out[8];
    float lp[3], lp_again[3], lp_one;
    assert_int_equal(generate(m, &b, 1.0f, 100, out, lp), DA_OK);
    assert_int_equal(generate(m, &b, 1.0f, 100, again, lp_again), DA_OK);
    assert_memory_equal(out, again, sizeof out);
    tu_assert_bits("log-probs, same seed", lp_again, lp, 3);
    int differs = 0;
    for (uint64_t seed = 101; seed < 111; seed++) {
        assert_int_equal(generate(m, &b, 1.5f, seed, other, NULL), DA_OK);
        for (int r = 0; r < b.B; r++) assert_format(other + r * M, M, V);
        differs |= memcmp(other, out, sizeof out) != 0;
    }
    assert_true(differs);

    for (int r = 0; r < b.B; r++) {
        da_rng rng;
        da_rng_seed(&rng, 100);
        for (int k = 0; k < r; k++) (void)da_rng_u64(&rng);
        assert_int_equal(da_refiner_generate(m, b.x0 + (size_t)r * 256, b.timesteps + r, b.query + r * M,
                                             b.query_keep + r * M, b.prompt + r * M, b.prompt_keep + r * M, 1,
                                             1.0f, &rng, one_out, &lp_one),
                         DA_OK);
        assert_memory_equal(one_out, out + r * M, sizeof one_out);
        /* every piece of a row is computed from that row alone: bits */
        tu_assert_bits("log-prob, row alone vs in a batch of 3", &lp_one, &lp[r], 1);
    }
    batch_free(&b);
    da_refiner_free(m);
}

/* 1 vs 2 threads: the teacher-forced logits and every parameter gradient
 * of the default config are bit-identical; so are the tokens and log-probs
 * that sampling (temperature 1) writes, default config, 5 rows (one group
 * of 5 rows on 1 thread, groups of 3 and 2 on 2 threads). */
static void test_refiner_threads(void **state)
{
    (void)state;
    da_refiner_config cfg = da_refiner_config_default();
    da_refiner *m = random_refiner(&cfg, 1, 11);
    batch b;
    random_batch(&b, &cfg, 4, 24, 51u);
    float *logits1 = NULL, *grad1 = malloc(m->params.total * sizeof(float));
    int saved = da_get_threads();
    for (int threads = 1; threads <= 2; threads++) {
        da_set_threads(threads);
        da_params_zero_grad(&m->params);
        da_tape t;
        da_tape_init(&t, 1 << 22);
        da_tensor *logits = forward(&t, m, &b);
        assert_non_null(logits);
        float *r = tu_alloc_fill(logits->size, 3u, -1.0f, 1.0f);
        da_tape_backward_from(&t, logits, r);
        if (threads == 1) {
            logits1 = malloc(logits->size * sizeof(float));
            memcpy(logits1, logits->data, logits->size * sizeof(float));
            memcpy(grad1, m->params.grad, m->params.total * sizeof(float));
        } else {
            tu_assert_bits("logits, 1 vs 2 threads", logits->data, logits1, logits->size);
            tu_assert_bits("parameter grads, 1 vs 2 threads", m->params.grad, grad1, m->params.total);
        }
        free(r);
        da_tape_free(&t);
    }
    float g = tu_max_abs(grad1, m->params.total);
    assert_true(g > 0.0f && isfinite(g));
    free(logits1); free(grad1);
    batch_free(&b);
    da_refiner_free(m);

    m = random_refiner(&cfg, 0, 13);
    random_batch(&b, &cfg, 5, 1, 53u);
    int out1[5 * 24], out2[5 * 24];
    float lp1[5], lp2[5];
    da_set_threads(1);
    assert_int_equal(generate(m, &b, 1.0f, 5, out1, lp1), DA_OK);
    da_set_threads(2);
    assert_int_equal(generate(m, &b, 1.0f, 5, out2, lp2), DA_OK);
    da_set_threads(saved);
    assert_memory_equal(out1, out2, sizeof out1);
    tu_assert_bits("log-probs, 1 vs 2 threads", lp2, lp1, 5);
    for (int r = 0; r < 5; r++) assert_format(out1 + r * 24, 24, cfg.vocab_size);
    batch_free(&b);
    da_refiner_free(m);
}

/* ------------------------------------------------------------------------ */

static char tmpdir[64];

static const char *tmp_path(char *path, const char *name)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/dalign_refiner_XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
    }
    snprintf(path, 128, "%s/%s", tmpdir, name);
    return path;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    if (tmpdir[0]) tu_rm_tree(tmpdir);
    tmpdir[0] = '\0';
    return 0;
}

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

/* Config round trip and the strict reader; weights round trip; a file of
 * another vocabulary refused by name. */
static void test_refiner_files(void **state)
{
    (void)state;
    da_refiner_config c = oracle_config(), back;
    memset(&back, 0, sizeof back);
    char cp[128], wp[128], missing[128];
    tmp_path(cp, "refiner.json");
    assert_int_equal(da_refiner_config_save(&c, cp), DA_OK);
    assert_int_equal(da_refiner_config_load(&back, cp), DA_OK);
    assert_memory_equal(&c, &back, sizeof c);
#define REST "\"n_layers\": 2, \"n_heads\": 4, \"mlp_ratio\": 4, \"latent_channels\": 4, \"latent_size\": 8"
    const char *bad[] = {
        "{\"vocab_size\": 20, \"max_tokens\": 8, \"d_model\": 32, " REST ", \"patch\": 2}",
        "{\"vocab_size\": 20, \"max_tokens\": 8, \"d_model\": 32, " REST ", \"patch\": 2, \"time_freq_dim\": 16, \"x\": 1}",
        "{\"vocab_size\": 20, \"max_tokens\": 8, \"d_model\": 30, " REST ", \"patch\": 2, \"time_freq_dim\": 16}",
        "{\"vocab_size\": 20, \"max_tokens\": 8, \"d_model\": 32, " REST ", \"patch\": 3, \"time_freq_dim\": 16}",
        "{\"vocab_size\": 20, \"max_tokens\": 8, \"d_model\": 32, " REST ", \"patch\": 2, \"time_freq_dim\": 15}",
        "{\"vocab_size\": 3, \"max_tokens\": 8, \"d_model\": 32, " REST ", \"patch\": 2, \"time_freq_dim\": 16}",
        "{\"vocab_size\": 20, \"max_tokens\": 1, \"d_model\": 32, " REST ", \"patch\": 2, \"time_freq_dim\": 16}",
        "{\"vocab_size\": -20, \"max_tokens\": 8, \"d_model\": 32, " REST ", \"patch\": 2, \"time_freq_dim\": 16}",
        "{\"vocab_size\": 20.5, \"max_tokens\": 8, \"d_model\": 32, " REST ", \"patch\": 2, \"time_freq_dim\": 16}",
        "[1, 2]", "{", ""};
#undef REST
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(cp, bad[i]);
        back = c;
        if (da_refiner_config_load(&back, cp) == DA_OK) fail_msg("config %zu accepted: %s", i, bad[i]);
        assert_memory_equal(&c, &back, sizeof c);   /* untouched on failure */
    }
    assert_int_not_equal(da_refiner_config_load(&back, tmp_path(missing, "missing.json")), DA_OK);
    da_refiner_config odd = c;
    odd.n_heads = 5;
    assert_null(da_refiner_create(&odd, 0));
    assert_int_not_equal(da_refiner_config_save(&odd, cp), DA_OK);

    da_refiner *a = random_refiner(&c, 0, 9), *b = da_refiner_create(&c, 0);
    tmp_path(wp, "refiner.safetensors");
    assert_int_equal(da_refiner_save(a, wp), DA_OK);
    assert_int_equal(da_refiner_load(b, wp), DA_OK);
    tu_assert_bits("weights round trip", b->params.data, a->params.data, a->params.total);
    da_refiner_config other = c;
    other.vocab_size = 21;   /* another tokenizer */
    da_refiner *o = da_refiner_create(&other, 0);
    assert_int_not_equal(da_refiner_load(o, wp), DA_OK);
    assert_non_null(strstr(da_last_error(), "token_embedding.weight"));
    da_refiner_free(o);
    da_refiner_free(b);
    da_refiner_free(a);
}

/* Bad inputs: NULL + a message naming the problem, never an abort. */
static void test_refiner_errors(void **state)
{
    (void)state;
    da_refiner_config cfg = oracle_config();
    da_refiner *m = random_refiner(&cfg, 0, 3);
    batch b;
    random_batch(&b, &cfg, 2, 4, 61u);
    da_tape t;
    da_tape_init(&t, 1 << 20);
    assert_non_null(forward(&t, m, &b));
    b.query[3] = 20;
    assert_null(forward(&t, m, &b));
    assert_non_null(strstr(da_last_error(), "query token id 20"));
    b.query[3] = 3;
    b.prompt[9] = -1;
    assert_null(forward(&t, m, &b));
    assert_non_null(strstr(da_last_error(), "prompt token id -1"));
    b.prompt[9] = 3;
    b.out[5] = 99;
    assert_null(forward(&t, m, &b));
    assert_non_null(strstr(da_last_error(), "output token id 99"));
    b.out[5] = 3;
    b.T_out = 9;   /* > max_tokens */
    assert_null(forward(&t, m, &b));
    assert_non_null(strstr(da_last_error(), "T_out <= 8"));
    b.T_out = 0;
    assert_null(forward(&t, m, &b));
    b.T_out = 4;
    b.B = 0;
    assert_null(forward(&t, m, &b));
    b.B = 2;
    float *x0 = b.x0;
    b.x0 = NULL;
    assert_null(forward(&t, m, &b));
    b.x0 = x0;
    assert_non_null(forward(&t, m, &b));

    int out[2 * 8];
    assert_int_equal(generate(m, &b, -1.0f, 1, out, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "temperature"));
    assert_int_equal(generate(m, &b, NAN, 1, out, NULL), DA_ERR_INVALID);
    assert_int_equal(generate(m, &b, INFINITY, 1, out, NULL), DA_ERR_INVALID);
    b.query[1] = 20;
    assert_int_equal(generate(m, &b, 1.0f, 1, out, NULL), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "query token id 20"));
    b.query[1] = 3;
    assert_int_equal(generate(m, &b, 1.0f, 1, NULL, NULL), DA_ERR_INVALID);
    assert_int_equal(da_refiner_generate(m, b.x0, b.timesteps, b.query, b.query_keep, b.prompt, b.prompt_keep,
                                         2, 1.0f, NULL, out, NULL),
                     DA_ERR_INVALID);
    assert_int_equal(generate(m, &b, 0.5f, 1, out, NULL), DA_OK);
    float logits[8 * 20];
    assert_int_equal(da_refiner_cached_logits(m, b.x0, b.timesteps[0], b.query, b.query_keep, b.prompt,
                                              b.prompt_keep, b.out, 0, logits),
                     DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "T_out 0"));
    b.out[1] = 20;
    assert_int_equal(da_refiner_cached_logits(m, b.x0, b.timesteps[0], b.query, b.query_keep, b.prompt,
                                              b.prompt_keep, b.out, 4, logits),
                     DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "output token id 20"));
    da_tape_free(&t);
    batch_free(&b);
    da_refiner_free(m);
}

/* The default config agrees with the tokenizer, has the parameter count
 * docs/promptloop.md gives, and the sequence layout of the design (16 patch
 * tokens of 2x2x4). Prints the forward cost at B = 8 (indicative). */
static void test_refiner_default(void **state)
{
    (void)state;
    da_refiner_config cfg = da_refiner_config_default();
    assert_int_equal(cfg.vocab_size, da_vocab_size());
    assert_int_equal(cfg.max_tokens, DA_MAX_TOKENS);
    for (int v = 0; v < cfg.vocab_size; v++) assert_int_equal(da_refiner_token_allowed(v), writable(v));
    assert_int_equal(da_refiner_seq_len(&cfg, DA_MAX_TOKENS), 16 + 1 + 3 * DA_MAX_TOKENS);
    da_refiner *m = random_refiner(&cfg, 1, 1);
    assert_int_equal(m->params.total, 642816);
    float *emb = da_params_get(&m->params, "segment_embedding.weight");
    assert_non_null(emb);
    assert_true(tu_max_abs(emb, 5 * 128) < 0.2f);   /* N(0, 0.02) */
    assert_non_null(da_params_get(&m->params, "time_mlp.2.bias"));
    assert_int_equal(da_params_find(&m->params, "lm_head.bias"), -1);

    batch b;
    random_batch(&b, &cfg, 8, 24, 71u);
    da_tape t;
    da_tape_init(&t, 1 << 22);
    double t0 = da_now_s();
    da_tensor *logits = forward(&t, m, &b);
    double t1 = da_now_s();
    assert_non_null(logits);
    float *r = tu_alloc_fill(logits->size, 3u, -1.0f, 1.0f);
    da_tape_backward_from(&t, logits, r);
    double t2 = da_now_s();
    printf("# refiner default: %zu parameters; B=8, T_out=24: forward %.1f ms, backward %.1f ms "
           "(%d threads, one call)\n",
           m->params.total, 1e3 * (t1 - t0), 1e3 * (t2 - t1), da_get_threads());
    free(r);
    da_tape_free(&t);
    batch_free(&b);
    da_refiner_free(m);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refiner_vs_torch),
        cmocka_unit_test(test_refiner_causal_padding),
        cmocka_unit_test(test_refiner_cache),
        cmocka_unit_test(test_refiner_greedy),
        cmocka_unit_test(test_refiner_logprobs),
        cmocka_unit_test(test_refiner_sampling),
        cmocka_unit_test(test_refiner_threads),
        cmocka_unit_test(test_refiner_files),
        cmocka_unit_test(test_refiner_errors),
        cmocka_unit_test(test_refiner_default),
    };
    return cmocka_run_group_tests(tests, NULL, remove_tmpdir);
}
