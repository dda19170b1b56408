/* The elementary functions dalign owns (src/core/mathf.c) and the libm
 * functions it still calls:
 * - accuracy of da_expf, da_logf, da_erff, da_tanhf, da_log1pf against long
 *   double libm over millions of inputs per function and their specials;
 * - machine independence: a 64-bit FNV-1a hash of each owned function's
 *   output bits over a fixed sweep of about a million inputs must equal the
 *   constant below (what x86-64 computes; the same test runs under
 *   qemu-aarch64), and the same for the libm functions the project relies on
 *   agreeing across machines (double exp, log, sin, cos, sqrt, pow as rng.c,
 *   optim.c, blocks.c and the samplers use them, and sqrtf).
 * - the array versions (da_expf_n, ...: src/core/vec_math.c) give the
 *   scalar functions' bits on every input of a sweep over all float bit
 *   patterns (every 997th by default; DA_MATHF_STRIDE=1 visits all 2^32),
 *   the floats next to every threshold, NaNs with payloads, any length and
 *   in place.
 * Inputs come from integer arithmetic and exact or IEEE-rounded double
 * operations only, so every machine sweeps the same values. */
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- inputs --------------------------------------------------------------- */

static uint32_t f2u(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static float u2f(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

/* floats ordered as integers: -FLT_MAX < ... < -0 = +0 < ... < +inf */
static int64_t order_key(float x)
{
    uint32_t u = f2u(x);
    return (u & 0x80000000u) ? -(int64_t)(u & 0x7fffffffu) : (int64_t)u;
}
static float from_key(int64_t k) { return k < 0 ? u2f(0x80000000u | (uint32_t)-k) : u2f((uint32_t)k); }

/* One stretch of a sweep: n floats from lo to hi (both included), either
 * evenly spaced in value (BY_VALUE) or evenly spaced in the ordering of
 * floats (BY_BITS: every binade gets its share, so tiny and huge values
 * are covered; with n >= the floats in [lo, hi] it visits each one once). */
enum { BY_VALUE, BY_BITS };
typedef struct span { float lo, hi; int n; int mode; } span;

static size_t span_fill(const span *s, float *x)
{
    size_t n = (size_t)s->n;
    if (s->mode == BY_BITS) {
        int64_t a = order_key(s->lo), b = order_key(s->hi);
        if ((int64_t)n > b - a + 1) n = (size_t)(b - a + 1);
        for (size_t i = 0; i < n; i++)
            x[i] = from_key(n == 1 ? a : a + (b - a) * (int64_t)i / (int64_t)(n - 1));  /* < 2^53 */
    } else {
        for (size_t i = 0; i < n; i++)
            x[i] = (float)((double)s->lo + ((double)s->hi - (double)s->lo) * (double)i / (double)(n - 1));
    }
    return n;
}

static const float SPECIALS[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX,
    0x1p-149f, -0x1p-149f, 0x1.fffffcp-127f, -0x1.fffffcp-127f, 1.0f, -1.0f, 0x1p-60f, -0x1p-60f,
    0.5f, -0.5f, 2.0f, -2.0f, 4.0f, -4.0f, 10.0f, -10.0f, 88.72283935546875f, 88.72283172607422f,
    -87.33654022216797f, -103.97207641601562f, -103.97208404541016f, 1e10f, -1e10f,
};
#define N_SPECIALS (sizeof SPECIALS / sizeof SPECIALS[0])

/* all spans, then the specials; malloc'd, *n gets the count */
static float *sweep(const span *s, int n_spans, size_t *n)
{
    size_t cap = N_SPECIALS;
    for (int i = 0; i < n_spans; i++) cap += (size_t)s[i].n;
    float *x = malloc(cap * sizeof *x);
    assert_non_null(x);
    size_t k = 0;
    for (int i = 0; i < n_spans; i++) k += span_fill(&s[i], x + k);
    memcpy(x + k, SPECIALS, sizeof SPECIALS);
    *n = k + N_SPECIALS;
    return x;
}

/* ---- the functions under test --------------------------------------------- */

typedef float (*fn_f)(float);
typedef long double (*fn_ld)(long double);

typedef struct owned {
    const char *name;
    fn_f da;
    fn_ld ref;
    const span *acc;   /* accuracy sweep */
    int n_acc;
    const span *hash;  /* hash sweep */
    int n_hash;
} owned;

static const span EXP_ACC[] = {
    {-104.0f, 89.0f, 1000000, BY_VALUE},      /* the whole finite range */
    {-1.0f, 1.0f, 500000, BY_VALUE},
    {0x1p-40f, 110.0f, 500000, BY_BITS},      /* every binade */
    {-110.0f, -0x1p-40f, 500000, BY_BITS},
    {88.6f, 88.8f, 100000, BY_BITS},          /* overflow threshold */
    {-87.5f, -87.2f, 100000, BY_BITS},        /* results turn subnormal */
    {-104.1f, -103.0f, 100000, BY_BITS},      /* smallest subnormals, underflow to 0 */
};
static const span LOG_ACC[] = {
    {0x1p-149f, INFINITY, 2000000, BY_BITS},  /* every positive float class */
    {0.5f, 2.0f, 500000, BY_VALUE},
    {0.99f, 1.01f, 400000, BY_BITS},          /* around 1, where log is small */
    {0.0f, 100.0f, 200000, BY_VALUE},
};
static const span ERF_ACC[] = {
    {-5.0f, 5.0f, 2000000, BY_VALUE},         /* GELU's range is erf(x / sqrt 2) */
    {0x1p-40f, 10.0f, 500000, BY_BITS},
    {-10.0f, -0x1p-40f, 500000, BY_BITS},
    {0.999f, 1.001f, 50000, BY_BITS},         /* where the method changes */
    {3.8f, 4.1f, 100000, BY_BITS},            /* where erf rounds to 1 */
};
static const span TANH_ACC[] = {
    {-12.0f, 12.0f, 2000000, BY_VALUE},
    {0x1p-40f, 20.0f, 500000, BY_BITS},
    {-20.0f, -0x1p-40f, 500000, BY_BITS},
    {0.499f, 0.501f, 50000, BY_BITS},         /* where the method changes */
    {8.5f, 10.5f, 100000, BY_BITS},           /* where tanh rounds to 1 */
};
static const span LOG1P_ACC[] = {
    {-1.0f, 10.0f, 1000000, BY_VALUE},
    {-0x1.fffffep-1f, -0x1p-40f, 700000, BY_BITS},  /* (-1, 0): every binade */
    {0x1p-40f, FLT_MAX, 700000, BY_BITS},
    {-1e-3f, 1e-3f, 300000, BY_VALUE},
    {-1.0f, -0.999f, 100000, BY_BITS},        /* next to the pole */
};

/* Hash sweeps: about a million inputs each over the range the function
 * sees in the models (and its specials). */
static const span EXP_HASH[] = {{-104.0f, 89.0f, 700000, BY_VALUE}, {0x1p-30f, 110.0f, 150000, BY_BITS},
                                {-110.0f, -0x1p-30f, 150000, BY_BITS}};
static const span LOG_HASH[] = {{0x1p-149f, FLT_MAX, 600000, BY_BITS}, {0.25f, 4.0f, 400000, BY_VALUE}};
static const span ERF_HASH[] = {{-6.0f, 6.0f, 800000, BY_VALUE}, {0x1p-30f, 10.0f, 100000, BY_BITS},
                                {-10.0f, -0x1p-30f, 100000, BY_BITS}};
static const span TANH_HASH[] = {{-12.0f, 12.0f, 800000, BY_VALUE}, {0x1p-30f, 20.0f, 100000, BY_BITS},
                                 {-20.0f, -0x1p-30f, 100000, BY_BITS}};
static const span LOG1P_HASH[] = {{-1.0f, 10.0f, 600000, BY_VALUE}, {-0x1.fffffep-1f, -0x1p-30f, 200000, BY_BITS},
                                  {0x1p-30f, FLT_MAX, 200000, BY_BITS}};

#define N_OF(a) (int)(sizeof a / sizeof a[0])
static const owned OWNED[] = {
    {"expf", da_expf, expl, EXP_ACC, N_OF(EXP_ACC), EXP_HASH, N_OF(EXP_HASH)},
    {"logf", da_logf, logl, LOG_ACC, N_OF(LOG_ACC), LOG_HASH, N_OF(LOG_HASH)},
    {"erff", da_erff, erfl, ERF_ACC, N_OF(ERF_ACC), ERF_HASH, N_OF(ERF_HASH)},
    {"tanhf", da_tanhf, tanhl, TANH_ACC, N_OF(TANH_ACC), TANH_HASH, N_OF(TANH_HASH)},
    {"log1pf", da_log1pf, log1pl, LOG1P_ACC, N_OF(LOG1P_ACC), LOG1P_HASH, N_OF(LOG1P_HASH)},
};
#define N_OWNED N_OF(OWNED)

/* ---- accuracy ------------------------------------------------------------- */

/* |got - exact| in units of the float ulp at exact (2^-149 below FLT_MIN);
 * *nearest: got is the float nearest exact (the same zero, infinity or NaN
 * included). An infinity, NaN or zero that is not the nearest float counts
 * as an infinite error. */
static double ulp_error(float got, long double exact, int *nearest)
{
    float want = (float)exact;
    *nearest = f2u(got) == f2u(want) || (isnan(got) && isnan(want));
    if (isnan(got) || isnan(want) || isinf(got) || isinf(want) || exact == 0.0L)
        return *nearest ? 0.0 : INFINITY;
    int e = ilogbl(exact);
    long double ulp = ldexpl(1.0L, (e < -126 ? -126 : e) - 23);
    return (double)(fabsl((long double)got - exact) / ulp);
}

/* The double evaluation in mathf.c is within ~4e-16 of the exact value, so
 * a float that is not the nearest one can only come from an exact value that
 * close to a rounding midpoint: about 1 input in 10^7. A slip in a
 * coefficient or a range reduction shows up as many misrounded inputs long
 * before the 1 ulp bound is broken, hence the second bound. */
#define MIN_CORRECTLY_ROUNDED 0.99999

/* Where long double is IEEE binary128 (aarch64), libm computes it in
 * software, about 30 times slower than x86-64's 80-bit format (minutes under
 * qemu): there every 8th input of the sweep is checked. */
#define ACC_STRIDE (LDBL_MANT_DIG > 64 ? 8 : 1)

static void check_accuracy(const owned *f)
{
    size_t n, checked = 0, exact = 0;
    float *x = sweep(f->acc, f->n_acc, &n);
    double worst = 0.0;
    float worst_x = 0.0f;
    for (size_t i = 0; i < n; i += ACC_STRIDE, checked++) {
        int nearest;
        double e = ulp_error(f->da(x[i]), f->ref((long double)x[i]), &nearest);
        exact += nearest;
        if (e > worst) { worst = e; worst_x = x[i]; }
    }
    double frac = (double)exact / (double)checked;
    print_message("  %-7s max %.6f ulp, %.6f%% correctly rounded, %zu inputs\n", f->name, worst,
                  100.0 * frac, checked);
    free(x);
    if (!(worst <= 1.0))
        fail_msg("%s: %.3g ulp at x = %a (%.9g): got %a, exact %.12Lg", f->name, worst, (double)worst_x,
                 (double)worst_x, (double)f->da(worst_x), f->ref((long double)worst_x));
    if (frac < MIN_CORRECTLY_ROUNDED)
        fail_msg("%s: only %.6f%% correctly rounded", f->name, 100.0 * frac);
}

static void test_accuracy(void **state)
{
    (void)state;
    for (int i = 0; i < N_OWNED; i++) check_accuracy(&OWNED[i]);
}

/* Values every IEEE machine must give exactly (signs of zero included). */
static void assert_same(const char *what, float got, float want)
{
    if (f2u(got) != f2u(want) && !(isnan(got) && isnan(want)))
        fail_msg("%s: got %a, want %a", what, (double)got, (double)want);
}

static void test_specials(void **state)
{
    (void)state;
    assert_same("expf(nan)", da_expf(NAN), NAN);
    assert_same("expf(inf)", da_expf(INFINITY), INFINITY);
    assert_same("expf(-inf)", da_expf(-INFINITY), 0.0f);
    assert_same("expf(0)", da_expf(0.0f), 1.0f);
    assert_same("expf(-0)", da_expf(-0.0f), 1.0f);
    assert_same("expf(88.7228394)", da_expf(88.72283935546875f), INFINITY);     /* overflows */
    assert_same("expf(88.7228317)", da_expf(88.72283172607422f), 0x1.ffff08p+127f);
    assert_same("expf(-103.3)", da_expf(-103.27892990343185f), 0x1p-149f);     /* smallest subnormal */
    assert_same("expf(-104)", da_expf(-104.0f), 0.0f);
    assert_same("expf(-1000)", da_expf(-1000.0f), 0.0f);
    assert_same("expf(1)", da_expf(1.0f), 2.71828182845904523536f);

    assert_same("logf(nan)", da_logf(NAN), NAN);
    assert_same("logf(0)", da_logf(0.0f), -INFINITY);
    assert_same("logf(-0)", da_logf(-0.0f), -INFINITY);
    assert_same("logf(-1)", da_logf(-1.0f), NAN);
    assert_same("logf(-inf)", da_logf(-INFINITY), NAN);
    assert_same("logf(inf)", da_logf(INFINITY), INFINITY);
    assert_same("logf(1)", da_logf(1.0f), 0.0f);
    assert_same("logf(2^-149)", da_logf(0x1p-149f), -103.27892990343185f);
    assert_same("logf(FLT_MAX)", da_logf(FLT_MAX), 88.72283905206835f);

    assert_same("erff(nan)", da_erff(NAN), NAN);
    assert_same("erff(0)", da_erff(0.0f), 0.0f);
    assert_same("erff(-0)", da_erff(-0.0f), -0.0f);
    assert_same("erff(inf)", da_erff(INFINITY), 1.0f);
    assert_same("erff(-inf)", da_erff(-INFINITY), -1.0f);
    assert_same("erff(-4)", da_erff(-4.0f), -1.0f);
    assert_same("erff(2^-149)", da_erff(0x1p-149f), 0x1p-149f);   /* 1.128 * 2^-149 rounds down */
    assert_same("erff(-1e-30)", da_erff(-1e-30f), -1.12837916709551257e-30f);

    assert_same("tanhf(nan)", da_tanhf(NAN), NAN);
    assert_same("tanhf(0)", da_tanhf(0.0f), 0.0f);
    assert_same("tanhf(-0)", da_tanhf(-0.0f), -0.0f);
    assert_same("tanhf(inf)", da_tanhf(INFINITY), 1.0f);
    assert_same("tanhf(-inf)", da_tanhf(-INFINITY), -1.0f);
    assert_same("tanhf(-1e-30)", da_tanhf(-1e-30f), -1e-30f);
    assert_same("tanhf(100)", da_tanhf(100.0f), 1.0f);

    assert_same("log1pf(nan)", da_log1pf(NAN), NAN);
    assert_same("log1pf(-1)", da_log1pf(-1.0f), -INFINITY);
    assert_same("log1pf(-2)", da_log1pf(-2.0f), NAN);
    assert_same("log1pf(-inf)", da_log1pf(-INFINITY), NAN);
    assert_same("log1pf(inf)", da_log1pf(INFINITY), INFINITY);
    assert_same("log1pf(0)", da_log1pf(0.0f), 0.0f);
    assert_same("log1pf(-0)", da_log1pf(-0.0f), -0.0f);
    assert_same("log1pf(-1e-30)", da_log1pf(-1e-30f), -1e-30f);
    assert_same("log1pf(2^-149)", da_log1pf(0x1p-149f), 0x1p-149f);
}

/* ---- machine independence ------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* FNV-1a over the bytes of v, least significant first (the same on any
 * byte order) */
static uint64_t fnv(uint64_t h, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= FNV_PRIME;
    }
    return h;
}

/* prints the hash; returns 1 (and says why) when it is not the wanted one,
 * so every function's hash is shown before the test fails */
static int check_hash(const char *what, uint64_t got, uint64_t want, size_t n)
{
    print_message("  %-7s %zu inputs, hash 0x%016llx\n", what, n, (unsigned long long)got);
    if (got == want) return 0;
    print_message("  %-7s differs from x86-64's 0x%016llx: this machine rounds differently\n", what,
                  (unsigned long long)want);
    return 1;
}

static void test_owned_hashes(void **state)
{
    (void)state;
    /* what x86-64 computes */
    static const uint64_t WANT[N_OWNED] = {
        0xfbd692cd1d761674ull,  /* expf */
        0xbdba402050d2d1beull,  /* logf */
        0xd975f0d0b36c32bfull,  /* erff */
        0xac552e4be85e73ffull,  /* tanhf */
        0x3907236141703169ull,  /* log1pf */
    };
    int bad = 0;
    for (int k = 0; k < N_OWNED; k++) {
        size_t n;
        float *x = sweep(OWNED[k].hash, OWNED[k].n_hash, &n);
        uint64_t h = FNV_OFFSET;
        for (size_t i = 0; i < n; i++) h = fnv(h, f2u(OWNED[k].da(x[i])), 4);
        free(x);
        bad += check_hash(OWNED[k].name, h, WANT[k], n);
    }
    if (bad) fail_msg("%d of %d owned functions give other bits than on x86-64", bad, N_OWNED);
}

/* NaN results hash as one value (x86-64 and aarch64 make NaNs of different
 * sign). */
static uint64_t fnv_double(uint64_t h, double v)
{
    uint64_t u;
    if (isnan(v)) v = NAN;
    memcpy(&u, &v, sizeof u);
    return fnv(h, u, 8);
}

/* uniform doubles k 2^-53 as rng.c draws them, from a fixed 64-bit LCG */
static double lcg_uniform(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1p-53;
}

#define N_LIBM 1000000

/* inputs of the double functions, N_LIBM of them, in the ranges the code
 * uses them on */
static void exp_inputs(double *x)   /* the rater's Bradley-Terry odds, metrics */
{
    for (int i = 0; i < N_LIBM; i++) x[i] = -100.0 + 200.0 * i / (N_LIBM - 1);
}

static void log_inputs(double *x)
{
    uint64_t s = 1;
    int k = 0;
    while (k < N_LIBM / 2) x[k++] = 1.0 - lcg_uniform(&s);                   /* rng.c: log(1 - u) */
    for (int i = 0; i < N_LIBM / 4; i++) x[k++] = 1.0 + 999.0 * i / (N_LIBM / 4 - 1);  /* log(sum exp) */
    span all = {0x1p-149f, FLT_MAX, N_LIBM / 4, BY_BITS};                   /* every float class */
    float *f = malloc((size_t)all.n * sizeof *f);
    assert_non_null(f);
    size_t m = span_fill(&all, f);
    for (size_t i = 0; i < m; i++) x[k++] = f[i];
    free(f);
}

static void angle_inputs(double *x)
{
    uint64_t s = 2;
    int k = 0;
    while (k < N_LIBM / 2) x[k++] = 2.0 * M_PI * lcg_uniform(&s);            /* Box-Muller */
    for (int i = 0; i < N_LIBM / 2 - 1000; i++)                             /* timestep embedding: */
        x[k++] = (float)(1000.0 * i / (N_LIBM / 2 - 1001));                 /* float t * f */
    for (int i = 0; i < 1000; i++) x[k++] = M_PI * (double)i / 999.0;        /* cosine lr schedule */
}

static void sqrt_inputs(double *x)
{
    uint64_t s = 3;
    int k = 0;
    while (k < N_LIBM / 2) x[k++] = 75.0 * lcg_uniform(&s);   /* Box-Muller's -2 log(1 - u) <= 73.7 */
    for (int i = 0; i < N_LIBM / 2; i++) x[k++] = 1e6 * i / (N_LIBM / 2 - 1);  /* norms */
}

/* The libm functions dalign keeps (rng.c must match PyTorch's glibc calls),
 * over inputs in the ranges the code uses them on. The constants are x86-64
 * glibc 2.36 on a CPU with FMA; aarch64 (glibc 2.36, qemu) gives the same.
 * A CPU without FMA does not: there glibc's ifunc picks non-FMA variants of
 * exp, log, sin, cos and pow that round differently on 0.01-0.07% of these
 * inputs (GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA shows it anywhere). */
static void test_libm_hashes(void **state)
{
    (void)state;
    /* what x86-64 computes */
    static const struct {
        const char *name;
        double (*f)(double);
        void (*inputs)(double *x);
        uint64_t want;
    } CASES[] = {
        {"exp", exp, exp_inputs, 0x43f1dd71df6796a9ull},
        {"log", log, log_inputs, 0x5bd1420de39323b2ull},
        {"sin", sin, angle_inputs, 0x187be3457bf4de60ull},
        {"cos", cos, angle_inputs, 0x827897235cf6b93aull},
        {"sqrt", sqrt, sqrt_inputs, 0x3b3b947e699ac2e7ull},  /* IEEE rounds it correctly: checked all the same */
    };
    const uint64_t WANT_POW = 0x01db678563e841c4ull, WANT_SQRTF = 0xdde8f077ad4a6decull;
    int bad = 0;
    double *x = malloc(N_LIBM * sizeof *x);
    assert_non_null(x);
    for (int c = 0; c < N_OF(CASES); c++) {
        CASES[c].inputs(x);
        uint64_t h = FNV_OFFSET;
        for (int i = 0; i < N_LIBM; i++) h = fnv_double(h, CASES[c].f(x[i]));
        bad += check_hash(CASES[c].name, h, CASES[c].want, N_LIBM);
    }
    free(x);

    /* pow: AdamW's bias corrections 1 - beta^step, float betas */
    static const float BETAS[] = {0.9f, 0.95f, 0.98f, 0.99f, 0.995f, 0.999f, 0.9999f};
    uint64_t h = FNV_OFFSET;
    size_t n = 0;
    for (int b = 0; b < N_OF(BETAS); b++)
        for (long step = 1; step <= N_LIBM / N_OF(BETAS); step++, n++)
            h = fnv_double(h, pow((double)BETAS[b], (double)step));
    bad += check_hash("pow", h, WANT_POW, n);

    /* sqrtf: every float class (schedules, DDIM/DDPM coefficients) */
    span pos = {0.0f, INFINITY, N_LIBM, BY_BITS};
    float *xf = malloc((size_t)pos.n * sizeof *xf);
    assert_non_null(xf);
    n = span_fill(&pos, xf);
    h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++) h = fnv(h, f2u(sqrtf(xf[i])), 4);
    free(xf);
    bad += check_hash("sqrtf", h, WANT_SQRTF, n);
    if (bad)
        fail_msg("%d of 7 libm functions give other bits than on x86-64 with FMA (a CPU without FMA "
                 "gets glibc's non-FMA exp, log, sin, cos, pow)", bad);
}

/* ---- array versions ------------------------------------------------------- */

typedef void (*fn_n)(float *out, const float *in, size_t n);
static const fn_n OWNED_N[N_OWNED] = {da_expf_n, da_logf_n, da_erff_n, da_tanhf_n, da_log1pf_n};

/* in (n) through the array function and the scalar one: the number of
 * inputs whose bits differ (the first few are printed) */
static size_t count_differences(int k, const float *in, float *out, size_t n)
{
    size_t bad = 0;
    OWNED_N[k](out, in, n);
    for (size_t i = 0; i < n; i++) {
        float want = OWNED[k].da(in[i]);
        if (f2u(out[i]) == f2u(want)) continue;
        if (bad++ < 5)
            print_message("  %s_n(%a = 0x%08x): 0x%08x, scalar 0x%08x\n", OWNED[k].name, (double)in[i],
                          f2u(in[i]), f2u(out[i]), f2u(want));
    }
    return bad;
}

/* Every STRIDE-th float bit pattern from 0 (the stride is odd: every
 * exponent, sign and NaN class gets 2^23 / STRIDE of them), in chunks. */
static void test_arrays_sweep(void **state)
{
    (void)state;
    const char *env = getenv("DA_MATHF_STRIDE");
    uint64_t stride = env ? strtoull(env, NULL, 10) : 997;
    if (stride == 0) stride = 997;
    enum { CHUNK = 1 << 16 };
    float *in = malloc(CHUNK * sizeof *in), *out = malloc(CHUNK * sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    size_t bad = 0;
    for (int k = 0; k < N_OWNED; k++) {
        size_t n_k = 0, bad_k = 0;
        for (uint64_t u = 0; u < (1ull << 32);) {
            size_t m = 0;
            for (; m < CHUNK && u < (1ull << 32); m++, u += stride) in[m] = u2f((uint32_t)u);
            bad_k += count_differences(k, in, out, m);
            n_k += m;
        }
        print_message("  %-7s array = scalar on %zu inputs (every %llu-th bit pattern): %zu differ\n",
                      OWNED[k].name, n_k, (unsigned long long)stride, bad_k);
        bad += bad_k;
    }
    free(in);
    free(out);
    if (bad) fail_msg("%zu inputs where an array version differs from its scalar function", bad);
}

/* the floats where a method, a range or the result's class changes */
static const float EDGES[] = {
    0.0f, 0x1p-149f, FLT_MIN, 0x1p-54f, 0x1p-53f, 0x1p-30f, 0.5f, 1.0f, 1.4142135f, 1.5f, 2.0f, 2.5f,
    3.0f, 3.5f, 4.0f, 10.0f, 20.0f, 89.0f, 88.72283935546875f, 87.33654022216797f, 103.97207641601562f,
    104.0f, 110.0f, FLT_MAX, INFINITY,
};
#define N_EDGES N_OF(EDGES)
#define EDGE_SIDE 512   /* floats on each side of each edge, both signs */

/* NaNs: quiet and signalling, both signs, payloads */
static const uint32_t NANS[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu,
                                0xffffffffu, 0x7fa5a5a5u, 0xffd00001u};

static void test_arrays_edges(void **state)
{
    (void)state;
    size_t cap = 2 * N_EDGES * (2 * EDGE_SIDE + 1) + N_OF(NANS), n = 0;
    float *in = malloc(cap * sizeof *in), *out = malloc(cap * sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    for (int e = 0; e < N_EDGES; e++)
        for (int sign = 0; sign < 2; sign++) {
            int64_t c = order_key(sign ? -EDGES[e] : EDGES[e]);
            for (int64_t d = -EDGE_SIDE; d <= EDGE_SIDE; d++) {
                int64_t key = c + d;
                if (key > 0x7f800000 || key < -0x7f800000) continue;   /* past +-inf */
                in[n++] = from_key(key);
            }
        }
    for (int i = 0; i < N_OF(NANS); i++) in[n++] = u2f(NANS[i]);
    size_t bad = 0;
    for (int k = 0; k < N_OWNED; k++) bad += count_differences(k, in, out, n);
    free(in);
    free(out);
    if (bad) fail_msg("%zu edge inputs where an array version differs from its scalar function", bad);
}

/* lengths around the block size, and out == in */
static void test_arrays_lengths(void **state)
{
    (void)state;
    static const size_t LENGTHS[] = {0, 1, 2, 3, 63, 64, 65, 127, 128, 129, 1000};
    float in[1000], out[1000 + 1], ref[1000];
    for (int i = 0; i < 1000; i++) in[i] = (float)(i - 500) * 0.0231f;
    for (int k = 0; k < N_OWNED; k++)
        for (int l = 0; l < N_OF(LENGTHS); l++) {
            size_t n = LENGTHS[l];
            for (size_t i = 0; i < n; i++) ref[i] = OWNED[k].da(in[i]);
            out[n] = 12345.0f;   /* must stay: nothing is written past n */
            OWNED_N[k](out, in, n);
            tu_assert_bits(OWNED[k].name, out, ref, n);
            assert_true(out[n] == 12345.0f);
            float io[1000];
            memcpy(io, in, n * sizeof(float));
            OWNED_N[k](io, io, n);   /* in place */
            tu_assert_bits(OWNED[k].name, io, ref, n);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specials),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_owned_hashes),
        cmocka_unit_test(test_libm_hashes),
        cmocka_unit_test(test_arrays_edges),
        cmocka_unit_test(test_arrays_lengths),
        cmocka_unit_test(test_arrays_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
