/* Elementary functions with the same bits on every machine (dalign.h).
 *
 * glibc's erff, tanhf and log1pf round differently on x86-64 and aarch64, and
 * on x86-64 it picks FMA variants of expf and logf at run time. These are
 * evaluated in double with + - * /, comparisons and exponent-bit arithmetic
 * only: no libm call, no FMA (the project builds with -ffp-contract=off), so
 * every IEEE-754 machine performs the same operations in the same order; the
 * result is rounded to float once, at the end.
 *
 * The double value is within about 4e-16 (relative) of the exact one, far
 * below half a float ulp (3e-8), so the float is the correctly rounded result
 * unless the exact value lies within that distance of a rounding midpoint.
 * Measured against long double libm (tests/test_mathf.c, and once over every
 * float, docs/determinism.md): expf, erff and tanhf are correctly rounded on
 * every float; logf misses on 5 floats and log1pf on 6, by 0.5000 ulp.
 *
 * The polynomial coefficients come from tests/oracle/mathf_fit.py, which
 * prints these tables (interpolation at Chebyshev nodes in 60-digit decimal
 * arithmetic, rounded to double) and the error of their double evaluation. */
/* No multiply-add may be fused. The Makefile passes -ffp-contract=off; these
 * keep it so when the file is built some other way (GCC in GNU mode and
 * clang fuse by default, and GCC does not implement the standard pragma). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>     /* INFINITY, NAN only: no function of libm is called */
#include <stdint.h>
#include <string.h>

#include "dalign/core.h"

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

/* ---- helpers -------------------------------------------------------------- */

/* c[0] + t (c[1] + t (c[2] + ...)): one rounding per operation, fixed order */
static inline double horner(const double *c, int n, double t)
{
    double r = c[n - 1];
    for (int i = n - 2; i >= 0; i--) r = r * t + c[i];
    return r;
}

/* 2^k for -1022 <= k <= 1023, built from the exponent bits */
static inline double pow2i(int k)
{
    uint64_t b = (uint64_t)(k + 1023) << 52;
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* exp(x) for |x| <= 110 with x of at most 25 significant bits (a float or
 * twice one). x = k ln2/64 + r, |r| <= ln2/128, k = 64 m + j, 0 <= j < 64:
 * exp(x) = 2^m 2^(j/64) P(r). k * LN2_64_HI is exact and so is
 * x - k * LN2_64_HI (both multiples of 2^-38, the difference below 2^-7),
 * so r carries only the rounding of k * LN2_64_LO. */
static double exp_core(double x)
{
    double kd = x * INV_LN2_64;
    int k = (int)(kd < 0.0 ? kd - 0.5 : kd + 0.5);   /* nearest integer */
    int j = k & 63;
    double r = (x - k * LN2_64_HI) - k * LN2_64_LO;
    return EXP2_TABLE[j] * horner(EXP_C, 6, r) * pow2i((k - j) / 64);
}

/* log(x) for a finite normal double x > 0. x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)]; log m = 2 atanh(s) = 2 s L(s^2), s = (m-1)/(m+1),
 * |s| <= 0.1716; m - 1 is exact. e ln2 is added in two parts (e * LN2_HI is
 * exact), so near x = 1 (e = 0) nothing cancels. */
static double log_core(double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    int e = (int)(b >> 52) - 1023;
    b = (b & 0x000fffffffffffffull) | 0x3ff0000000000000ull;  /* m in [1, 2) */
    double m;
    memcpy(&m, &b, sizeof m);
    if (m > 1.4142135623730951) {  /* sqrt(2) */
        m = 0.5 * m;
        e++;
    }
    double s = (m - 1.0) / (m + 1.0);
    double lm = 2.0 * s * horner(LOG_C, 8, s * s);
    return e * LN2_HI + (e * LN2_LO + lm);
}

/* ---- the functions -------------------------------------------------------- */

/* exp: exp_core, rounded once. Past 89 the double exceeds FLT_MAX and the
 * conversion gives inf; below -104 the result is under half the smallest
 * subnormal (2^-150 = e^-103.97) and rounds to 0. Subnormal results come out
 * of the one rounding from double, so they are correctly rounded too. */
float da_expf(float x)
{
    if (x != x) return x + x;   /* NaN */
    if (x > 89.0f) return INFINITY;
    if (x < -104.0f) return 0.0f;
    return (float)exp_core(x);
}

/* log: log_core on the exact double of x (float subnormals are normal
 * doubles, so they need no special case). */
float da_logf(float x)
{
    if (x != x) return x + x;
    if (x < 0.0f) return NAN;
    if (x == 0.0f) return -INFINITY;
    if (x == INFINITY) return x;
    return (float)log_core(x);
}

/* log1p: u = 1 + x in double (exact unless |x| < 2^-29), then
 * log1p(x) = log(u) * x / (u - 1) (Goldberg's correction for the rounding of
 * u). When u rounds to 1, |x| < 2^-53 and log1p(x) = x to far below a float
 * ulp; returning x also keeps the sign of -0. */
float da_log1pf(float x)
{
    if (x != x) return x + x;
    if (x < -1.0f) return NAN;
    if (x == -1.0f) return -INFINITY;
    if (x == INFINITY) return x;
    double u = 1.0 + (double)x;
    if (u == 1.0) return x;
    return (float)(log_core(u) * ((double)x / (u - 1.0)));
}

/* tanh: x H(x^2) below 1/2 (tiny x and -0 come out as x); above,
 * 1 - 2 / (exp(2|x|) + 1), where nothing cancels (tanh > 0.46); past 10 the
 * float is +-1 (1 - tanh(10) = 4e-9 < half an ulp below 1). */
float da_tanhf(float x)
{
    if (x != x) return x + x;
    double xd = x, ax = x < 0.0f ? -xd : xd, t;
    if (ax < 0.5) return (float)(xd * horner(TANH_C, 11, xd * xd));
    if (ax > 10.0) t = 1.0;
    else t = 1.0 - 2.0 / (exp_core(2.0 * ax) + 1.0);
    return (float)(x < 0.0f ? -t : t);
}

/* erf: x E(x^2) below 1 (tiny x and -0 come out as x * 2/sqrt(pi)); on
 * [1, 4) one of six polynomials in |x| - centre, each on a piece of width
 * 1/2; from 4 the float is +-1 (1 - erf(4) = 1.5e-8 < half an ulp below 1). */
float da_erff(float x)
{
    if (x != x) return x + x;
    double xd = x, ax = x < 0.0f ? -xd : xd, y;
    if (ax < 1.0) return (float)(xd * horner(ERF_SMALL, 12, xd * xd));
    if (ax >= 4.0) {
        y = 1.0;
    } else {
        int i = (int)((ax - 1.0) * 2.0);
        y = horner(ERF_PIECE[i], 14, ax - (1.25 + 0.5 * i));
    }
    return (float)(x < 0.0f ? -y : y);
}
