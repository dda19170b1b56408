/* Random numbers: mt19937 known values, PyTorch streams bit for bit
 * (tests/oracle/rng.py), the cached normal, randint ranges and errors, the
 * state as text (checkpoints) and back. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint64_t SEEDS[] = {0, 1, 42, (1ull << 32) + 5};
static const size_t RANDN_N[] = {1, 2, 3, 15, 16, 17, 31, 32, 100, 1000};
static const size_t SEQ[] = {3, 1, 20, 1, 20, 1, 2};  /* as in rng.py */

/* Published mt19937 check values (C++11 [rand.predef]: the 10000th draw of a
 * default-constructed std::mt19937, seed 5489, is 4123659995). */
static void test_mt19937_known(void **state)
{
    (void)state;
    da_rng r;
    da_rng_seed(&r, 5489);
    assert_int_equal(da_rng_u32(&r), 3499211612u);
    da_rng_seed(&r, 5489);
    uint32_t v = 0;
    for (int i = 0; i < 10000; i++) v = da_rng_u32(&r);
    assert_int_equal(v, 4123659995u);
    /* random64(): first draw is the high word */
    da_rng a, b;
    da_rng_seed(&a, 7);
    da_rng_seed(&b, 7);
    uint64_t hi = da_rng_u32(&b), lo = da_rng_u32(&b);
    assert_true(da_rng_u64(&a) == ((hi << 32) | lo));
}

/* Integers stored as exact f32 parts NAME.hi * 2^20 + NAME.lo (see rng.py). */
static int64_t *ref_ints(da_safetensors *st, const char *name, size_t n, int64_t low)
{
    char nh[128], nl[128];
    snprintf(nh, sizeof nh, "%s.hi", name);
    snprintf(nl, sizeof nl, "%s.lo", name);
    float *hi = tu_ref(st, nh, n), *lo = tu_ref(st, nl, n);
    int64_t *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = ((int64_t)hi[i] << 20) + (int64_t)lo[i] + low;
    free(hi);
    free(lo);
    return v;
}

static void assert_ints(const char *what, const int64_t *got, const int64_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s[%zu]: got %lld, want %lld", what, i, (long long)got[i], (long long)want[i]);
}

static void test_u32_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("rng");
    const uint64_t seeds[] = {0, 5489};
    for (int s = 0; s < 2; s++) {
        char name[64];
        snprintf(name, sizeof name, "u32.s%llu", (unsigned long long)seeds[s]);
        int64_t *want = ref_ints(st, name, 10, 0);
        int64_t got[10];
        da_rng r;
        da_rng_seed(&r, seeds[s]);
        for (int i = 0; i < 10; i++) got[i] = da_rng_u32(&r);
        assert_ints(name, got, want, 10);
        free(want);
    }
    da_st_close(st);
}

static void check_randn(da_safetensors *st, uint64_t seed, size_t n)
{
    char name[64];
    snprintf(name, sizeof name, "randn.s%llu.n%zu", (unsigned long long)seed, n);
    float *want = tu_ref(st, name, n);
    float *got = malloc(n * sizeof *got);
    da_rng r;
    da_rng_seed(&r, seed);
    da_randn(&r, got, n);
    tu_assert_bits(name, got, want, n);
    free(got);
    free(want);
}

/* Both randn paths (n < 16: double Box-Muller with libm; n >= 16: the AVX2
 * float kernel with polynomial log/sincos and the redrawn tail), bit exact. */
static void test_randn_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("rng");
    for (size_t s = 0; s < sizeof SEEDS / sizeof *SEEDS; s++)
        for (size_t k = 0; k < sizeof RANDN_N / sizeof *RANDN_N; k++) check_randn(st, SEEDS[s], RANDN_N[k]);
    check_randn(st, 0, 4096 + 7);
    check_randn(st, 42, 4096 + 7);
    da_st_close(st);
}

static void test_rand_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("rng");
    const uint64_t seeds[] = {0, 42};
    const size_t ns[] = {5, 100};
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "rand.s%llu.n%zu", (unsigned long long)seeds[s], ns[k]);
            float *want = tu_ref(st, name, ns[k]);
            float got[100];
            da_rng r;
            da_rng_seed(&r, seeds[s]);
            da_rand(&r, got, ns[k]);
            tu_assert_bits(name, got, want, ns[k]);
            for (size_t i = 0; i < ns[k]; i++) assert_true(got[i] >= 0.0f && got[i] < 1.0f);
            free(want);
        }
    da_st_close(st);
}

/* Several calls on one generator: the cached normal carries across calls and
 * survives the n >= 16 path and rand/randint in between. */
static void test_sequences_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("rng");
    float got[64];
    size_t n = 0;
    da_rng r;
    da_rng_seed(&r, 0);
    for (size_t k = 0; k < sizeof SEQ / sizeof *SEQ; k++) {
        da_randn(&r, got + n, SEQ[k]);
        n += SEQ[k];
    }
    float *want = tu_ref(st, "seq.s0", n);
    tu_assert_bits("seq.s0", got, want, n);
    free(want);

    /* randn(1), rand(3), randint(0, 1000, (4,)), randn(1), randn(17) */
    da_rng_seed(&r, 7);
    da_randn(&r, got, 1);
    da_rand(&r, got + 1, 3);
    int64_t ints[4];
    assert_int_equal(da_randint(&r, ints, 4, 0, 1000), DA_OK);
    for (int i = 0; i < 4; i++) got[4 + i] = (float)ints[i];
    da_randn(&r, got + 8, 1);
    da_randn(&r, got + 9, 17);
    want = tu_ref(st, "mix.s7", 26);
    tu_assert_bits("mix.s7", got, want, 26);
    free(want);
    da_st_close(st);
}

static void test_randint_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("rng");
    da_rng r;
    int64_t got[50];
    float gotf[50];
    const uint64_t seeds[] = {0, 42};
    for (int s = 0; s < 2; s++) {
        char name[64];
        snprintf(name, sizeof name, "randint.s%llu.0_10", (unsigned long long)seeds[s]);
        da_rng_seed(&r, seeds[s]);
        assert_int_equal(da_randint(&r, got, 50, 0, 10), DA_OK);
        for (int i = 0; i < 50; i++) gotf[i] = (float)got[i];
        float *want = tu_ref(st, name, 50);
        tu_assert_bits(name, gotf, want, 50);
        free(want);
    }
    da_rng_seed(&r, 1);
    assert_int_equal(da_randint(&r, got, 50, -5, 5), DA_OK);
    for (int i = 0; i < 50; i++) gotf[i] = (float)got[i];
    float *want = tu_ref(st, "randint.s1.m5_5", 50);
    tu_assert_bits("randint.s1.m5_5", gotf, want, 50);
    free(want);

    const struct { const char *name; uint64_t seed; size_t n; int64_t low, high; } big[] = {
        {"randint.s0.0_2p40", 0, 50, 0, 1ll << 40},
        {"randint.s3.m2p40_2p40", 3, 20, -(1ll << 40), 1ll << 40},
        {"randint.s4.0_2p32", 4, 10, 0, 1ll << 32},  /* smallest range drawing 64 bits */
    };
    for (int k = 0; k < 3; k++) {
        int64_t *wi = ref_ints(st, big[k].name, big[k].n, big[k].low);
        da_rng_seed(&r, big[k].seed);
        assert_int_equal(da_randint(&r, got, big[k].n, big[k].low, big[k].high), DA_OK);
        assert_ints(big[k].name, got, wi, big[k].n);
        free(wi);
    }
    da_st_close(st);
}

/* PyTorch keeps the second Box-Muller value in the generator: randn(1) twice
 * equals randn(2), and the second call draws nothing. */
static void test_cached_normal(void **state)
{
    (void)state;
    da_rng r, copy;
    float a[2], b[2];
    da_rng_seed(&r, 123);
    da_randn(&r, a, 1);
    assert_true(r.has_next_normal);
    copy = r;
    da_randn(&r, a + 1, 1);
    assert_false(r.has_next_normal);
    assert_int_equal(da_rng_u32(&r), da_rng_u32(&copy));  /* no draw was used */
    da_rng_seed(&r, 123);
    da_randn(&r, b, 2);
    tu_assert_bits("randn(1)+randn(1) vs randn(2)", a, b, 2);

    /* the n >= 16 kernel neither reads nor clears the cache */
    float big[16];
    da_rng_seed(&r, 5);
    da_randn(&r, a, 1);
    double cached = r.next_normal;
    da_randn(&r, big, 16);
    assert_true(r.has_next_normal && r.next_normal == cached);
    da_randn(&r, a + 1, 1);
    assert_true(a[1] == (float)cached);
    /* seeding clears it */
    da_rng_seed(&r, 5);
    assert_false(r.has_next_normal);
}

/* n % 16 != 0: the first block is transformed from the first 16 uniforms,
 * so randn(17)[0..15) shares its first element with randn(16); the last 16
 * elements are redrawn, so element 1 differs (overwritten). */
static void test_randn_tail_redraw(void **state)
{
    (void)state;
    float x16[16], x17[17];
    da_rng r;
    da_rng_seed(&r, 9);
    da_randn(&r, x16, 16);
    da_rng_seed(&r, 9);
    da_randn(&r, x17, 17);
    tu_assert_bits("randn(17)[0] vs randn(16)[0]", x17, x16, 1);
    assert_true(x17[1] != x16[1]);
    da_randn(&r, x17, 0);  /* n = 0 draws and writes nothing */
}

static void test_streams(void **state)
{
    (void)state;
    enum { N = 1000 };
    static float a[N], b[N];
    da_rng r1, r2;
    da_rng_seed(&r1, 77);
    da_rng_seed(&r2, 77);
    da_randn(&r1, a, N);
    da_randn(&r2, b, N);
    tu_assert_bits("same seed", a, b, N);
    da_rng_seed(&r2, 78);
    da_randn(&r2, b, N);
    int same = 0;
    for (int i = 0; i < N; i++) same += a[i] == b[i];
    assert_true(same < 10);  /* independent streams: equal floats are rare */
    /* sample moments of N(0,1) over 1000 draws: |mean| < 4/sqrt(1000), var
     * within 4 sigma (sd of the sample variance ~ sqrt(2/1000)) */
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += a[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (a[i] - m) * (a[i] - m);
    v /= N - 1;
    assert_true(m > -0.127 && m < 0.127);
    assert_true(v > 1.0 - 0.179 && v < 1.0 + 0.179);
}

static void test_randint_ranges(void **state)
{
    (void)state;
    enum { N = 2000 };
    static int64_t x[N];
    const struct { int64_t low, high; } rg[] = {
        {0, 10}, {-5, 5}, {7, 8}, {-3, 1ll << 33}, {INT64_MIN, INT64_MAX}, {INT64_MAX - 3, INT64_MAX},
    };
    da_rng r;
    da_rng_seed(&r, 11);
    for (int k = 0; k < 6; k++) {
        assert_int_equal(da_randint(&r, x, N, rg[k].low, rg[k].high), DA_OK);
        for (int i = 0; i < N; i++)
            if (x[i] < rg[k].low || x[i] >= rg[k].high)
                fail_msg("randint[%lld, %lld): got %lld", (long long)rg[k].low,
                         (long long)rg[k].high, (long long)x[i]);
    }
    /* every value of a small range shows up */
    assert_int_equal(da_randint(&r, x, N, 0, 10), DA_OK);
    int seen[10] = {0};
    for (int i = 0; i < N; i++) seen[x[i]] = 1;
    for (int v = 0; v < 10; v++) assert_true(seen[v]);
    /* empty ranges are errors and leave out untouched */
    x[0] = 42;
    assert_int_equal(da_randint(&r, x, 1, 5, 5), DA_ERR_INVALID);
    assert_int_equal(da_randint(&r, x, 1, 5, -5), DA_ERR_INVALID);
    assert_true(x[0] == 42);
}

/* the same state, field by field (the double by its bits: NaN-safe) */
static void assert_same_rng(const da_rng *a, const da_rng *b)
{
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->has_next_normal, b->has_next_normal);
    assert_memory_equal(&a->next_normal, &b->next_normal, sizeof a->next_normal);
    assert_memory_equal(a->mt, b->mt, sizeof a->mt);
}

/* Checkpoints store the RNG as text: text -> state -> text is the
 * identity, and the restored generator continues with the same draws, in
 * every kind of state (fresh, mid-stream, a cached normal pending). */
static void test_text_round_trip(void **state)
{
    (void)state;
    static char text[DA_RNG_TEXT], again[DA_RNG_TEXT];
    float fa[40], fb[40];
    for (int kind = 0; kind < 3; kind++) {
        da_rng a, b;
        da_rng_seed(&a, 1234 + (uint64_t)kind);
        if (kind >= 1)
            for (int i = 0; i < 700; i++) da_rng_u32(&a);   /* past one twist */
        if (kind == 2) da_randn(&a, fa, 1);                   /* leaves a cached normal */
        assert_int_equal(a.has_next_normal, kind == 2);
        da_rng_to_text(&a, text);
        assert_int_equal(strlen(text), DA_RNG_TEXT - 1);
        memset(&b, 0xab, sizeof b);
        assert_int_equal(da_rng_from_text(&b, text), 0);
        assert_same_rng(&a, &b);
        da_rng_to_text(&b, again);
        assert_string_equal(text, again);
        /* randn of 3 uses (and refills) the cached normal; 37 the fast path */
        da_randn(&a, fa, 3);
        da_randn(&b, fb, 3);
        da_randn(&a, fa + 3, 37);
        da_randn(&b, fb + 3, 37);
        assert_memory_equal(fa, fb, sizeof fa);
        assert_true(da_rng_u64(&a) == da_rng_u64(&b));
    }
}

/* Anything but the exact text is refused, and the generator is untouched. */
static void test_text_rejects(void **state)
{
    (void)state;
    static char good[DA_RNG_TEXT], bad[DA_RNG_TEXT + 1];
    da_rng a, r, before;
    da_rng_seed(&a, 9);
    da_rng_u32(&a);
    da_rng_to_text(&a, good);
    da_rng_seed(&r, 77);
    before = r;
    assert_int_equal(da_rng_from_text(&r, NULL), -1);
    assert_int_equal(da_rng_from_text(&r, ""), -1);
    const struct { int at; char c; } edits[] = {
        {0, 'A'},                    /* uppercase hex in the index */
        {3, '_'},                    /* separator */
        {4, '2'},                    /* the has_normal flag is 0 or 1 */
        {10, 'g'},                   /* normal bits */
        {DA_RNG_TEXT - 2, 'F'},      /* the last word */
        {DA_RNG_TEXT - 10, 'x'},     /* the separator before it */
    };
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        memcpy(bad, good, DA_RNG_TEXT);
        bad[edits[k].at] = edits[k].c;
        if (da_rng_from_text(&r, bad) != -1) fail_msg("edit %zu was accepted", k);
    }
    memcpy(bad, good, DA_RNG_TEXT);
    memcpy(bad, "271", 3);                            /* index 0x270 = 624 is the largest */
    assert_int_equal(da_rng_from_text(&r, bad), -1);
    memcpy(bad, good, DA_RNG_TEXT);
    bad[DA_RNG_TEXT - 2] = '\0';                      /* one digit short */
    assert_int_equal(da_rng_from_text(&r, bad), -1);
    memcpy(bad, good, DA_RNG_TEXT - 1);
    bad[DA_RNG_TEXT - 1] = '0';                        /* one digit long */
    bad[DA_RNG_TEXT] = '\0';
    assert_int_equal(da_rng_from_text(&r, bad), -1);
    assert_same_rng(&r, &before);
    memcpy(bad, good, DA_RNG_TEXT);
    memcpy(bad, "270", 3);                            /* 624: twist before the next draw */
    assert_int_equal(da_rng_from_text(&r, bad), 0);
    assert_int_equal(r.index, 624);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mt19937_known),
        cmocka_unit_test(test_u32_vs_torch),
        cmocka_unit_test(test_randn_vs_torch),
        cmocka_unit_test(test_rand_vs_torch),
        cmocka_unit_test(test_sequences_vs_torch),
        cmocka_unit_test(test_randint_vs_torch),
        cmocka_unit_test(test_cached_normal),
        cmocka_unit_test(test_randn_tail_redraw),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_randint_ranges),
        cmocka_unit_test(test_text_round_trip),
        cmocka_unit_test(test_text_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
