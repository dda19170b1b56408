/* Internal to src/core: the tables of the elementary functions and their
 * branch-free forms, one value ("lane") at a time.
 *
 * src/core/mathf.c holds the scalar functions (da_expf, ...: the reference,
 * with branches). The *_lane functions below perform, for every input, the
 * same double operations in the same order as those, but choose between the
 * ranges with selects (sel_f: bit masks over values computed for every
 * input) instead of branches, and look up tables with 64-bit indices. A loop over them has
 * no control flow, so GCC vectorises it (-O2, SSE2 up, NEON), and since each
 * IEEE-754 operation is exact per lane, every vector width gives the bits of
 * the scalar function. Inputs that a range's formula must not see (NaN, inf,
 * values that would overflow an int conversion) are replaced by a harmless
 * value before that formula, and its result is then discarded by the select.
 *
 * Used by src/core/vec_math.c (da_expf_n, ...: the array versions) and by
 * the ops that inline them into their own loops (vec_act.c, ops_softmax.c,
 * ops_unary.c, vec_norm.c). tests/test_mathf.c checks array against scalar
 * bit for bit.
 *
 * No multiply-add may be fused (the Makefile passes -ffp-contract=off, and
 * GCC in ISO C mode, -std=c11, does not fuse anyway); this keeps clang so. */
#ifndef DA_CORE_MATHF_H
#define DA_CORE_MATHF_H

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>     /* INFINITY, NAN only */
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define DA_LANE static inline __attribute__((always_inline))
#else
#define DA_LANE static inline
#endif

/* ---- tables printed by tests/oracle/mathf_fit.py ------------------------- */

/* exp(r), |r| <= 0.0055; max relative error of the double evaluation 1.11e-16 */
static const double EXP_C[6] = {
    1.0, 1.0, 0.4999999999992851,
    0.16666666666656454, 0.0416667296875383, 0.00833334233631378,
};
/* 2^(j/64), j = 0..63, each the nearest double */
static const double EXP2_TABLE[64] = {
    1.0, 1.0108892860517005, 1.0218971486541166,
    1.0330248790212284, 1.0442737824274138, 1.0556451783605572,
    1.0671404006768237, 1.0787607977571199, 1.0905077326652577,
    1.102382583307841, 1.1143867425958924, 1.1265216186082418,
    1.1387886347566916, 1.1511892299529827, 1.1637248587775775,
    1.1763969916502812, 1.189207115002721, 1.202156731452703,
    1.215247359980469, 1.22848053610687, 1.241857812073484,
    1.255380757024691, 1.2690509571917332, 1.2828700160787783,
    1.2968395546510096, 1.3109612115247644, 1.3252366431597413,
    1.339667524053303, 1.3542555469368927, 1.3690024229745905,
    1.383909881963832, 1.3989796725383112, 1.4142135623730951,
    1.42961333839197, 1.4451808069770467, 1.460917794180647,
    1.4768261459394993, 1.4929077282912648, 1.5091644275934228,
    1.5255981507445384, 1.5422108254079407, 1.559004400237837,
    1.5759808451078865, 1.593142151342267, 1.6104903319492543,
    1.6280274218573478, 1.645755478153965, 1.6636765803267364,
    1.681792830507429, 1.7001063537185235, 1.718619298122478,
    1.7373338352737062, 1.7562521603732995, 1.7753764925265212,
    1.7947090750031072, 1.8142521755003989, 1.8340080864093424,
    1.8539791250833855, 1.8741676341103, 1.8945759815869656,
    1.9152065613971474, 1.9360617934922943, 1.9571441241754002,
    1.978456026387951,
};
#define LN2_64_HI 0.010830424696905538  /* ln2/64 rounded to a multiple of 2^-38 */
#define LN2_64_LO -6.563929801064195e-13  /* ln2/64 - LN2_64_HI */
#define INV_LN2_64 92.33248261689366  /* 64/ln2 */
#define LN2_HI 0.6931471806019545  /* ln 2 rounded to a multiple of 2^-32 */
#define LN2_LO -4.2009150726810846e-11  /* ln 2 - LN2_HI */
/* atanh(s)/s as a polynomial in z = s^2, 0 <= z <= 0.029440; max relative error of the double evaluation 1.12e-16 */
static const double LOG_C[8] = {
    1.0, 0.33333333333333826, 0.19999999999650955,
    0.1428571438036914, 0.11111098523202137, 0.09091816120808513,
    0.0765625655736915, 0.07404933786156531,
};
/* tanh(x)/x as a polynomial in z = x^2, |x| < 0.5; max relative error of the double evaluation 7.13e-17 */
static const double TANH_C[11] = {
    1.0, -0.3333333333333308, 0.13333333333292816,
    -0.05396825394287032, 0.021869487718845705, -0.008863220134250503,
    0.0035919465020130574, -0.0014544509176344551, 0.0005831792400007558,
    -0.00021761442156422375, 5.663500915911181e-05,
};
/* erf(x)/x as a polynomial in z = x^2, |x| < 1; max relative error of the double evaluation 1.64e-16 */
static const double ERF_SMALL[12] = {
    1.1283791670955126, -0.37612638903183543, 0.11283791670945006,
    -0.02686617064323777, 0.0052239776071164225, -0.0008548325975389692,
    0.00012055294904839707, -1.492473690741966e-05, 1.6447424703317362e-06,
    -1.6208483801871705e-07, 1.3720064546777686e-08, -7.795898827002142e-10,
};
/* erf(c + t), |t| <= 1/4, c = 1.25 + 0.5 i: row i */
/* max relative error of the double evaluation 1.23e-16 */
static const double ERF_PIECE[6][14] = {
    {
        0.9229001282564582, 0.2365211224472908, -0.29565140305911153,
        0.16753579506683547, -0.006159404230896534, -0.04718103640600039,
        0.02130127301145005, 0.0036259827199190244, -0.0056976802634647146,
        0.0008776311203165393, 0.0007935637760477615, -0.0003238378954372589,
        -5.3358854084741746e-05, 5.444072496071499e-05,
    },
    {
        0.9866716712191824, 0.05277499593015038, -0.09235624287775983,
        0.09015728471400461, -0.04810220983301914, 0.006624361468900602,
        0.008963045180389002, -0.006058751526573601, 0.0007300475155067315,
        0.0008941843166397162, -0.0004426629932340801, -5.505955216685546e-06,
        6.765497805692175e-05, -1.701393213048856e-05,
    },
    {
        0.9985372834133188, 0.007142319022017982, -0.016070217799542874,
        0.02172455369197196, -0.01908338363633625, 0.010657679165515582,
        -0.00290435713041379, -0.000670455955356343, 0.0009994964272719107,
        -0.000369381086164474, -1.153034958136253e-05, 6.51506823581935e-05,
        -2.194472164632137e-05, -1.51649993594491e-06,
    },
    {
        0.9998993780778803, 0.0005862772470937923, -0.0016122624295072932,
        0.002760388705066609, -0.003258113659793406, 0.0027558084140728244,
        -0.0016573273880252134, 0.0006460409567512276, -8.901228719214331e-05,
        -7.122311801431493e-05, 5.5013835286284066e-05, -1.5843740679499495e-05,
        -1.2681253092432668e-06, 2.6871314689526557e-06,
    },
    {
        0.9999956972205363, 2.9189025383581733e-05, -9.486433249663875e-05,
        0.0001958097119481461, -0.00028656933775070937, 0.00031379722550312924,
        -0.0002635285041757942, 0.0001699914133368133, -8.164763207712718e-05,
        2.5913900673472375e-05, -2.328840480316741e-06, -2.865557704931699e-06,
        1.9043111846332243e-06, -5.336244331841553e-07,
    },
    {
        0.9999998862727434, 8.814321912317976e-07, -3.305370717149894e-06,
        7.969616062397557e-06, -1.384123987009681e-05, 1.8370974995629414e-05,
        -1.927272219942407e-05, 1.6275302987042403e-05, -1.1128193054255004e-05,
        6.108869420026458e-06, -2.6041152154208356e-06, 7.756125867485207e-07,
        -8.078525577335848e-08, -6.041585276859998e-08,
    },
};
/* ERF_PIECE by coefficient, for a lookup across the lanes of a vector:
 * ERF_PIECE_COL[k][l] = ERF_PIECE[min(l, 5)][k] (erff_piece_x16) */
static const double ERF_PIECE_COL[14][8] = {
    {0.9229001282564582, 0.9866716712191824, 0.9985372834133188, 0.9998993780778803,
     0.9999956972205363, 0.9999998862727434, 0.9999998862727434, 0.9999998862727434},
    {0.2365211224472908, 0.05277499593015038, 0.007142319022017982, 0.0005862772470937923,
     2.9189025383581733e-05, 8.814321912317976e-07, 8.814321912317976e-07, 8.814321912317976e-07},
    {-0.29565140305911153, -0.09235624287775983, -0.016070217799542874, -0.0016122624295072932,
     -9.486433249663875e-05, -3.305370717149894e-06, -3.305370717149894e-06, -3.305370717149894e-06},
    {0.16753579506683547, 0.09015728471400461, 0.02172455369197196, 0.002760388705066609,
     0.0001958097119481461, 7.969616062397557e-06, 7.969616062397557e-06, 7.969616062397557e-06},
    {-0.006159404230896534, -0.04810220983301914, -0.01908338363633625, -0.003258113659793406,
     -0.00028656933775070937, -1.384123987009681e-05, -1.384123987009681e-05, -1.384123987009681e-05},
    {-0.04718103640600039, 0.006624361468900602, 0.010657679165515582, 0.0027558084140728244,
     0.00031379722550312924, 1.8370974995629414e-05, 1.8370974995629414e-05, 1.8370974995629414e-05},
    {0.02130127301145005, 0.008963045180389002, -0.00290435713041379, -0.0016573273880252134,
     -0.0002635285041757942, -1.927272219942407e-05, -1.927272219942407e-05, -1.927272219942407e-05},
    {0.0036259827199190244, -0.006058751526573601, -0.000670455955356343, 0.0006460409567512276,
     0.0001699914133368133, 1.6275302987042403e-05, 1.6275302987042403e-05, 1.6275302987042403e-05},
    {-0.0056976802634647146, 0.0007300475155067315, 0.0009994964272719107, -8.901228719214331e-05,
     -8.164763207712718e-05, -1.1128193054255004e-05, -1.1128193054255004e-05, -1.1128193054255004e-05},
    {0.0008776311203165393, 0.0008941843166397162, -0.000369381086164474, -7.122311801431493e-05,
     2.5913900673472375e-05, 6.108869420026458e-06, 6.108869420026458e-06, 6.108869420026458e-06},
    {0.0007935637760477615, -0.0004426629932340801, -1.153034958136253e-05, 5.5013835286284066e-05,
     -2.328840480316741e-06, -2.6041152154208356e-06, -2.6041152154208356e-06, -2.6041152154208356e-06},
    {-0.0003238378954372589, -5.505955216685546e-06, 6.51506823581935e-05, -1.5843740679499495e-05,
     -2.865557704931699e-06, 7.756125867485207e-07, 7.756125867485207e-07, 7.756125867485207e-07},
    {-5.3358854084741746e-05, 6.765497805692175e-05, -2.194472164632137e-05, -1.2681253092432668e-06,
     1.9043111846332243e-06, -8.078525577335848e-08, -8.078525577335848e-08, -8.078525577335848e-08},
    {5.444072496071499e-05, -1.701393213048856e-05, -1.51649993594491e-06, 2.6871314689526557e-06,
     -5.336244331841553e-07, -6.041585276859998e-08, -6.041585276859998e-08, -6.041585276859998e-08},
};

/* ---- pieces ----------------------------------------------------------------- */

/* c[0] + t (c[1] + t (c[2] + ...)): mathf.c's horner, unrolled (n is a
 * constant wherever it is called) so that the loop around it vectorises */
DA_LANE double horner_lane(const double *c, int n, double t)
{
    double r = c[n - 1];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16
#endif
    for (int i = n - 2; i >= 0; i--) r = r * t + c[i];
    return r;
}

DA_LANE double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

DA_LANE uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

DA_LANE float bits_to_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

DA_LANE uint32_t float_to_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

/* c ? a : b (c is 0 or 1) through a bit mask. Written as ?:, GCC threads
 * the computation into both arms wherever one arm is a constant (a
 * sanitised input makes the whole formula a constant there), which leaves
 * branches in the loop and stops the vectoriser; and with trapping math it
 * will not speculate a floating-point operation out of one arm.
 * Every condition is a comparison of the float input: SSE2 has masks of
 * 32-bit lanes, but no 64-bit integer select (GCC wants SSE4.2 for that),
 * so nothing selects between doubles on a condition (|x| of a float is
 * exact in double, so |x| < 0.5 and x < 0.5f && x > -0.5f are one test). */
DA_LANE float sel_f(int c, float a, float b)
{
    uint32_t m = (uint32_t)0 - (uint32_t)c;
    return bits_to_float((float_to_bits(a) & m) | (float_to_bits(b) & ~m));
}

/* |x| < a, |x| <= a, |x| >= a for a float x and a > 0, without fabsf */
DA_LANE int abs_lt(float x, float a) { return (x < a) & (x > -a); }
DA_LANE int abs_le(float x, float a) { return (x <= a) & (x >= -a); }
DA_LANE int abs_ge(float x, float a) { return (x >= a) | (x <= -a); }

/* |x| by clearing the sign bit (mathf.c's x < 0 ? -x : x wherever it is
 * used: there x != 0, and -0 and +0 give the same results anyway) */
DA_LANE double abs_d(double x) { return bits_to_double(double_to_bits(x) & 0x7fffffffffffffffull); }

/* mathf.c's exp_core for |x| <= 110 (finite). k = nearest integer to
 * x 64/ln2 (halves away from 0) by the same add and truncation: kd < 0 ?
 * -0.5 : 0.5 is 0.5 with the sign bit of kd (for kd = -0 both give k = 0).
 * 2^m is built in the exponent bits as pow2i does, from k - j = 64 m. */
DA_LANE double exp_core_lane(double x)
{
    double kd = x * INV_LN2_64;
    double half = bits_to_double(0x3fe0000000000000ull | (double_to_bits(kd) & 0x8000000000000000ull));
    int k = (int)(kd + half);
    int64_t j = k & 63;
    double r = (x - k * LN2_64_HI) - k * LN2_64_LO;
    uint64_t scale = ((uint64_t)((int64_t)k - j) << 46) + (1023ull << 52);  /* (m + 1023) << 52 */
    return EXP2_TABLE[j] * horner_lane(EXP_C, 6, r) * bits_to_double(scale);
}

/* mathf.c's log_core for a finite normal double x > 0. The exponent is
 * taken to double through the bits (2^52 + e' - 2^52, exact), which needs no
 * 64-bit integer to double conversion (SSE2 has none). Where m > sqrt 2,
 * m is halved and e incremented: here m is multiplied by 1 or 1/2 and e
 * gets 0 or 1 added, the same values without a select (both exact). */
DA_LANE double log_core_lane(double x)
{
    uint64_t b = double_to_bits(x);
    double e = bits_to_double((b >> 52) | 0x4330000000000000ull) - 0x1p52 - 1023.0;
    uint64_t mb = (b & 0x000fffffffffffffull) | 0x3ff0000000000000ull;   /* m in [1, 2) */
    uint64_t big = (0x3ff6a09e667f3bcdull - mb) >> 63;  /* m > sqrt(2): positive doubles order as integers */
    double m = bits_to_double(mb) * bits_to_double(0x3ff0000000000000ull - (big << 52));  /* 1 or 1/2 */
    e = e + bits_to_double(big * 0x3ff0000000000000ull);                              /* 0 or 1 */
    double s = (m - 1.0) / (m + 1.0);
    double lm = 2.0 * s * horner_lane(LOG_C, 8, s * s);
    return e * LN2_HI + (e * LN2_LO + lm);
}

/* ---- the functions, one lane each (same results as mathf.c's) ------------- */
/* Conditions are combined with & and | (&& and || would be branches). An
 * input outside a formula's range is replaced by a harmless one before it
 * (sanitised), and the formula's result is then not selected. A sign is
 * applied after the rounding to float: rounding to nearest is symmetric,
 * so (float)-t = -(float)t. */

DA_LANE float expf_lane(float x)
{
    int in_range = (x >= -104.0f) & (x <= 89.0f);   /* false for NaN */
    float y = (float)exp_core_lane(sel_f(in_range, x, 0.0f));
    y = sel_f(x > 89.0f, INFINITY, y);
    y = sel_f(x < -104.0f, 0.0f, y);
    return sel_f(x != x, x + x, y);
}

DA_LANE float logf_lane(float x)
{
    int in_range = (x > 0.0f) & (x < INFINITY);
    float y = (float)log_core_lane(sel_f(in_range, x, 1.0f));
    y = sel_f(x == INFINITY, x, y);
    y = sel_f(x == 0.0f, -INFINITY, y);
    y = sel_f(x < 0.0f, NAN, y);
    return sel_f(x != x, x + x, y);
}

/* u = 1 + x rounds to 1 exactly for -2^-54 <= x <= 2^-53 (ties to even);
 * there mathf.c returns x, and this lane's formula (log 1 * x / 0) is not
 * selected. */
DA_LANE float log1pf_lane(float x)
{
    int in_range = (x > -1.0f) & (x < INFINITY);
    double xs = sel_f(in_range, x, 1.0f);
    double u = 1.0 + xs;
    float y = (float)(log_core_lane(u) * (xs / (u - 1.0)));
    int u_is_1 = (x >= -0x1p-54f) & (x <= 0x1p-53f);
    y = sel_f((x == INFINITY) | u_is_1, x, y);
    y = sel_f(x == -1.0f, -INFINITY, y);
    y = sel_f(x < -1.0f, NAN, y);
    return sel_f(x != x, x + x, y);
}

/* below 1/2: x H(x^2); to 10: 1 - 2 / (exp(2|x|) + 1); past: +-1 */
DA_LANE float tanhf_lane(float x)
{
    double xd = x;
    float small = (float)(xd * horner_lane(TANH_C, 11, xd * xd));
    double ax = abs_d(sel_f(abs_le(x, 10.0f), x, 0.5f));   /* NaN, past 10: harmless */
    float big = (float)(1.0 - 2.0 / (exp_core_lane(2.0 * ax) + 1.0));
    big = sel_f(abs_le(x, 10.0f), big, 1.0f);
    big = sel_f(x < 0.0f, -big, big);
    float y = sel_f(abs_lt(x, 0.5f), small, big);
    return sel_f(x != x, x + x, y);
}

/* horner(ERF_PIECE[i], 14, t) with the coefficients gathered by a 64-bit
 * index (GCC gathers ERF_PIECE[i][k] per lane, not through a pointer) */
DA_LANE double erf_piece_lane(int i, double t)
{
    int64_t p = i;
    double r = ERF_PIECE[p][13];
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 16
#endif
    for (int k = 12; k >= 0; k--) r = r * t + ERF_PIECE[p][k];
    return r;
}

/* 1 <= |x| < 4, the lanes that need erf's pieces */
DA_LANE int erf_in_pieces(float x) { return abs_ge(x, 1.0f) & abs_lt(x, 4.0f); }

/* erf on [1, 4) with the sign of x: the piece i = (int)((|x| - 1) 2), its
 * 14 coefficients gathered per lane (any other x: a value to drop) */
DA_LANE float erff_piece_lane(float x)
{
    double ax = abs_d(sel_f(erf_in_pieces(x), x, 1.0f));
    int i = (int)((ax - 1.0) * 2.0);
    float big = (float)erf_piece_lane(i, ax - (1.25 + 0.5 * i));
    return sel_f(x < 0.0f, -big, big);
}

/* erf given piece = erff_piece_lane(x) (used where 1 <= |x| < 4): below 1,
 * x E(x^2); from 4, +-1 */
DA_LANE float erff_rest_lane(float x, float piece)
{
    double xd = x;
    float small = (float)(xd * horner_lane(ERF_SMALL, 12, xd * xd));
    float big = sel_f(abs_lt(x, 4.0f), piece, sel_f(x < 0.0f, -1.0f, 1.0f));
    float y = sel_f(abs_lt(x, 1.0f), small, big);
    return sel_f(x != x, x + x, y);
}

DA_LANE float erff_lane(float x) { return erff_rest_lane(x, erff_piece_lane(x)); }

/* ---- blocks ------------------------------------------------------------------ */

#define MATHF_BLK 64   /* values per block of the array functions and the ops */

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
/* Explicit vectors, for the avx512 copy only: GCC's own vectorisation of
 * the lane forms looks tables up one value at a time; a permutation of a
 * register looks up 8 (16 over two registers) at once. */
#include <immintrin.h>
#define MATHF_V8 1
typedef double mf_v8d __attribute__((vector_size(64)));
typedef long long mf_v8l __attribute__((vector_size(64)));
typedef float mf_v8f __attribute__((vector_size(32)));
typedef int mf_v8i __attribute__((vector_size(32)));

/* exp_core_lane of 8 doubles: the same operations in the same order. In
 * intrinsics, not GNU vectors: GCC 12 splits a conversion between a
 * 256-bit and a 512-bit vector type into halves, which made the GNU-vector
 * version slower than GCC's own vectorisation of the lanes. The table is
 * looked up by four permutations of two registers (vpermt2pd: 16 entries,
 * j taken modulo 16) and two blends on bits 4 and 5 of j, where the lanes'
 * loop reads it one value at a time. */
static inline __m512d exp_core_x8(__m512d x)
{
    __m512d kd = _mm512_mul_pd(x, _mm512_set1_pd(INV_LN2_64));
    __m512i sign = _mm512_and_si512(_mm512_castpd_si512(kd), _mm512_set1_epi64((long long)0x8000000000000000ull));
    __m512d half = _mm512_castsi512_pd(_mm512_or_si512(sign, _mm512_set1_epi64(0x3fe0000000000000LL)));
    __m256i k = _mm512_cvttpd_epi32(_mm512_add_pd(kd, half));   /* (int): truncation */
    __m512d kk = _mm512_cvtepi32_pd(k);
    __m512d r = _mm512_sub_pd(_mm512_sub_pd(x, _mm512_mul_pd(kk, _mm512_set1_pd(LN2_64_HI))),
                              _mm512_mul_pd(kk, _mm512_set1_pd(LN2_64_LO)));
    __m512i k64 = _mm512_cvtepi32_epi64(k), j = _mm512_and_si512(k64, _mm512_set1_epi64(63));
    __m512i scale = _mm512_add_epi64(_mm512_slli_epi64(_mm512_sub_epi64(k64, j), 46),
                                     _mm512_set1_epi64(1023LL << 52));
    __m512d p = _mm512_set1_pd(EXP_C[5]);
    for (int i = 4; i >= 0; i--) p = _mm512_add_pd(_mm512_mul_pd(p, r), _mm512_set1_pd(EXP_C[i]));
    const double *t = EXP2_TABLE;
    __m512d t01 = _mm512_permutex2var_pd(_mm512_loadu_pd(t), j, _mm512_loadu_pd(t + 8));
    __m512d t23 = _mm512_permutex2var_pd(_mm512_loadu_pd(t + 16), j, _mm512_loadu_pd(t + 24));
    __m512d t45 = _mm512_permutex2var_pd(_mm512_loadu_pd(t + 32), j, _mm512_loadu_pd(t + 40));
    __m512d t67 = _mm512_permutex2var_pd(_mm512_loadu_pd(t + 48), j, _mm512_loadu_pd(t + 56));
    __mmask8 b4 = _mm512_test_epi64_mask(j, _mm512_set1_epi64(16)), b5 = _mm512_test_epi64_mask(j, _mm512_set1_epi64(32));
    __m512d tj = _mm512_mask_blend_pd(b5, _mm512_mask_blend_pd(b4, t01, t23), _mm512_mask_blend_pd(b4, t45, t67));
    return _mm512_mul_pd(_mm512_mul_pd(tj, p), _mm512_castsi512_pd(scale));
}

/* out (16) = expf_lane(in (16)): exp_core_x8 on each half, then
 * expf_lane's selects (past 89 inf, below -104 zero, NaN x + x). Softmax's
 * exp 1.36 -> 1.05 ns a value, SiLU 1.35 -> 1.13 (bench_act, one Zen 5
 * core). Checked against the scalar da_expf on every 997th float
 * (test_mathf; on all 2^32 once) and against the base copy (test_isa). */
static inline void expf_x16(float *out, const float *in)
{
    __m512 x = _mm512_loadu_ps(in);
    __mmask16 in_range = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_GE_OQ) &
                         _mm512_cmp_ps_mask(x, _mm512_set1_ps(89.0f), _CMP_LE_OQ);   /* false for NaN */
    __m512 xs = _mm512_maskz_mov_ps(in_range, x);                                      /* out of range: 0 */
    __m512d lo = exp_core_x8(_mm512_cvtps_pd(_mm512_castps512_ps256(xs)));
    __m512d hi = exp_core_x8(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xs), 1))));
    __m512 y = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo))),
                                                   _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, _mm512_set1_ps(89.0f), _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_LT_OQ), _mm512_setzero_ps());
    y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_NEQ_UQ), _mm512_add_ps(x, x));
    _mm512_storeu_ps(out, y);
}
#endif

/* EXPF_N(out, in, n): out (n) = expf_lane(in (n)), n a constant multiple
 * of EXPF_N_STEP (the avx512 copy goes 16 at a time; the users assert it);
 * out and in are distinct arrays, or the same one */
#define EXPF_N_STEP 16
#ifdef MATHF_V8
#define EXPF_N(out, in, n) for (int k_ = 0; k_ < (n); k_ += 16) expf_x16((out) + k_, (in) + k_)
#else
#define EXPF_N(out, in, n) for (int k_ = 0; k_ < (n); k_++) (out)[k_] = expf_lane((in)[k_])
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
/* one lane group's piece number i and offset t (erff_piece_lane's) */
#define ERF_PIECE_ARGS(x, i, t)                                                      \
    mf_v8l i;                                                                        \
    mf_v8d t;                                                                        \
    do {                                                                             \
        mf_v8d xd_ = __builtin_convertvector(x, mf_v8d);                             \
        mf_v8l bits_;                                                                \
        memcpy(&bits_, &xd_, sizeof bits_);                                          \
        bits_ &= 0x7fffffffffffffffLL; /* |x| (abs_d) */                             \
        mf_v8d ax_;                                                                  \
        memcpy(&ax_, &bits_, sizeof ax_);                                            \
        i = __builtin_convertvector((ax_ - 1.0) * 2.0, mf_v8l);                       \
        t = ax_ - (1.25 + 0.5 * __builtin_convertvector(i, mf_v8d));                  \
    } while (0)

/* out (8) = the result r of a lane group with the sign of x */
static inline void erf_piece_store(float *out, mf_v8d r, mf_v8f x)
{
    mf_v8f big = __builtin_convertvector(r, mf_v8f);
    mf_v8i xs, bb;
    memcpy(&xs, &x, sizeof xs);
    memcpy(&bb, &big, sizeof bb);
    bb ^= xs & (int)0x80000000; /* -big where x < 0 (x is never 0 here) */
    memcpy(out, &bb, sizeof bb);
}

/* out (16) = erff_piece_lane(in (16)), for 16 values in the pieces: the
 * same operations on the same values, but each coefficient is one vector
 * of the six pieces' (ERF_PIECE_COL[k]) permuted by the lanes' piece
 * numbers, one vpermpd, where the lane form gathers it value by value
 * (that gather was most of erf's time on GELU's inputs: 3.3 -> 2.5 ns a
 * value, one Zen 4 core). Two groups of 8 lanes, their Horner chains side
 * by side, each coefficient vector loaded once for both (one group at a
 * time, GCC copied the table to the stack at every call: erf on [-5, 5]
 * 2.04-2.16 -> 1.88-2.00 ns a value, bench_act, Zen 5). Only in the avx512
 * copy: with AVX2 or SSE2 GCC spells the permutation out lane by lane,
 * slower than the gather. Checked against erff_piece_lane on every float
 * (DA_MATHF_STRIDE=1 test_mathf; docs/determinism.md). */
static inline void erff_piece_x16(float *out, const float *in)
{
    mf_v8f x0, x1;
    memcpy(&x0, in, sizeof x0);
    memcpy(&x1, in + 8, sizeof x1);
    ERF_PIECE_ARGS(x0, i0, t0);
    ERF_PIECE_ARGS(x1, i1, t1);
    mf_v8d c;
    memcpy(&c, ERF_PIECE_COL[13], sizeof c);
    mf_v8d r0 = __builtin_shuffle(c, i0), r1 = __builtin_shuffle(c, i1);
#pragma GCC unroll 13
    for (int k = 12; k >= 0; k--) {
        memcpy(&c, ERF_PIECE_COL[k], sizeof c);
        r0 = r0 * t0 + __builtin_shuffle(c, i0);
        r1 = r1 * t1 + __builtin_shuffle(c, i1);
    }
    erf_piece_store(out, r0, x0);
    erf_piece_store(out + 8, r1, x1);
}
#define ERF_PACK 16 /* lanes per step over the packed inputs */
#define ERFF_PIECES(out, in) erff_piece_x16(out, in)
#else
#define ERF_PACK 8
#define ERFF_PIECES(out, in)                                                         \
    for (int k_ = 0; k_ < ERF_PACK; k_++) (out)[k_] = erff_piece_lane((in)[k_])
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
/* The packing of erff_block with AVX-512's compress and expand, 16 lanes
 * an instruction: packed = the x in the pieces, in order (n of them; block
 * b stores 16 floats from n_b <= 16 b, so every store, and every load of
 * the unpacking, stays inside MATHF_BLK floats), masks[b] = which of
 * x[16 b, 16 b + 16) they are. The one-value-a-step loop below was a quarter of erf's time on
 * GELU's inputs (perf, Zen 5). Moves values only: the bits are the loop's. */
#define ERF_COMPRESS 1
static inline int erf_pack_x16(float *packed, __mmask16 *masks, const float *x)
{
    const __m512 one = _mm512_set1_ps(1.0f), four = _mm512_set1_ps(4.0f);
    int n = 0;
    for (int b = 0; b < MATHF_BLK / 16; b++) {
        __m512 v = _mm512_loadu_ps(x + 16 * b);
        /* erf_in_pieces: (x >= 1 | x <= -1) & x < 4 & x > -4, false for NaN */
        __mmask16 m = (_mm512_cmp_ps_mask(v, one, _CMP_GE_OQ) | _mm512_cmp_ps_mask(v, -one, _CMP_LE_OQ)) &
                      _mm512_cmp_ps_mask(v, four, _CMP_LT_OQ) & _mm512_cmp_ps_mask(v, -four, _CMP_GT_OQ);
        masks[b] = m;
        _mm512_storeu_ps(packed + n, _mm512_maskz_compress_ps(m, v));
        n += __builtin_popcount(m);
    }
    return n;
}

/* piece[i] = the packed result of x[i] where x[i] is in the pieces, else 0 */
static inline void erf_unpack_x16(float *piece, const __mmask16 *masks, const float *packed)
{
    int n = 0;
    for (int b = 0; b < MATHF_BLK / 16; b++) {
        _mm512_storeu_ps(piece + 16 * b, _mm512_maskz_expand_ps(masks[b], _mm512_loadu_ps(packed + n)));
        n += __builtin_popcount(masks[b]);
    }
}
#endif

/* y (MATHF_BLK) = erf(x (MATHF_BLK)), with erff_lane's bits. The piece
 * polynomial is most of erff_lane's cost and GELU's inputs need it only in
 * 1 <= |x| < 4 (about a sixth of N(0, 1) values), so those are packed first (in
 * order, branch-free) and the pieces computed only for them, ERF_PACK at a
 * time; every lane then gets erff_rest_lane. Each lane still performs the
 * same operations on the same value. y may be x. */
static inline void erff_block(float *y, const float *x)
{
    float xb[MATHF_BLK], piece[MATHF_BLK], packed[MATHF_BLK];
    int n = 0;
    memcpy(xb, x, sizeof xb);
#ifdef ERF_COMPRESS
    __mmask16 masks[MATHF_BLK / 16];
    n = erf_pack_x16(packed, masks, xb);
#else
    int where[MATHF_BLK], need[MATHF_BLK];
    /* the tests first, in a loop of their own that vectorises: inside the
     * packing loop they were four scalar compares a value, most of the
     * block's time (perf, Zen 4) */
    for (int i = 0; i < MATHF_BLK; i++) need[i] = erf_in_pieces(xb[i]);
    for (int i = 0; i < MATHF_BLK; i++) {   /* slot n is written always, kept when in the pieces */
        where[n] = i;
        packed[n] = xb[i];
        n += need[i];
    }
#endif
    for (int k = n; k % ERF_PACK; k++) packed[k] = 1.0f;   /* MATHF_BLK is a multiple of ERF_PACK */
    for (int k0 = 0; k0 < n; k0 += ERF_PACK) ERFF_PIECES(packed + k0, packed + k0);
#ifdef ERF_COMPRESS
    erf_unpack_x16(piece, masks, packed);
#else
    memset(piece, 0, sizeof piece);
    for (int k = 0; k < n; k++) piece[where[k]] = packed[k];
#endif
    for (int i = 0; i < MATHF_BLK; i++) y[i] = erff_rest_lane(xb[i], piece[i]);
}

/* ---- composed --------------------------------------------------------------- */

/* sigmoid without overflow, as SiLU's kernels compute it (vec_act.c, and
 * the fused GroupNorm + SiLU of vec_norm.c, which must give the same bits):
 * e = exp(-|x|); x >= 0 ? 1 / (1 + e) : e / (1 + e). The loops over
 * blocks take the exps first (EXPF_N over -|x|), then sigmoid_of_exp. */
DA_LANE float sigmoid_of_exp(float x, float e) { return sel_f(x >= 0.0f, 1.0f, e) / (1.0f + e); }

DA_LANE float sigmoidf_lane(float x) { return sigmoid_of_exp(x, expf_lane(-fabsf(x))); }

#endif
