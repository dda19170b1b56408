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
 * prints the tables (now in core/mathf.h; interpolation at Chebyshev nodes in
 * 60-digit decimal arithmetic, rounded to double) and the error of their
 * double evaluation. The array versions are in src/core/vec_math.c. */
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

#include "core/mathf.h"
#include "dalign/core.h"

/* The tables (printed by tests/oracle/mathf_fit.py) are in core/mathf.h, which
 * also holds the branch-free forms of these functions used by the array
 * versions (src/core/vec_math.c). */

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
