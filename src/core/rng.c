/* Random numbers, bit-compatible with PyTorch 1.13's CPU generator:
 * torch.manual_seed(s); torch.randn / torch.rand / torch.randint.
 *
 * PyTorch's CPU generator is a plain mt19937 (32-bit draws). On top of it:
 *  - uniform float  = (u32 & (2^24-1)) * 2^-24            (torch.rand)
 *  - uniform double = (u64 & (2^53-1)) * 2^-53, u64 = hi<<32 | lo
 *  - torch.randn(n) takes one of two paths (see da_randn), and the fast path
 *    uses single-precision polynomial log/sin/cos, not libm.
 * Every quirk below was checked bit for bit against torch 1.13.1 (Debian,
 * "CPU capability usage: AVX2"); tests/oracle/rng.py writes the references. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dalign/core.h"

#define MT_N 624
#define MT_M 397

/* torch.manual_seed(seed): PyTorch's mt19937 keeps only the low 32 bits of
 * the seed (state[0] = seed & 0xffffffff), so seeds s and s + 2^32 give the
 * same stream. Seeding also drops the cached normal. */
void da_rng_seed(da_rng *r, uint64_t seed)
{
    r->mt[0] = (uint32_t)seed;
    for (int i = 1; i < MT_N; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->index = MT_N;  /* twist before the first draw */
    r->has_next_normal = 0;
    r->next_normal = 0.0;
}

/* Regenerate all 624 words (the standard mt19937 recurrence). */
static void mt_twist(da_rng *r)
{
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[(i + 1) % MT_N] & 0x7fffffffu);
        r->mt[i] = r->mt[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    r->index = 0;
}

uint32_t da_rng_u32(da_rng *r)
{
    if (r->index >= MT_N) mt_twist(r);
    uint32_t y = r->mt[r->index++];
    y ^= y >> 11;  /* tempering */
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* PyTorch's random64(): the first draw is the high word. */
uint64_t da_rng_u64(da_rng *r)
{
    uint64_t hi = da_rng_u32(r);
    uint64_t lo = da_rng_u32(r);
    return (hi << 32) | lo;
}

/* at::uniform_real_distribution<float>(0, 1): 24 random bits, exact. */
static float uniform_float(da_rng *r)
{
    return (float)(da_rng_u32(r) & 0xffffffu) * 0x1p-24f;
}

/* at::uniform_real_distribution<double>(0, 1): 53 bits of random64(). */
static double uniform_double(da_rng *r)
{
    return (double)(da_rng_u64(r) & 0x1fffffffffffffull) * 0x1p-53;
}

void da_rand(da_rng *r, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = uniform_float(r);
}

/* at::normal_distribution<double>: Box-Muller in double with libm (1.13 uses
 * log(1 - u2); later PyTorch versions switched to log1p(-u2)). Each pair
 * returns r*cos and caches r*sin in the generator; the next call (even in a
 * later torch.randn) returns the cached value without drawing. */
static double normal_double(da_rng *r)
{
    if (r->has_next_normal) {
        r->has_next_normal = 0;
        return r->next_normal + 0.0;  /* PyTorch's ret * std + mean (1, 0): -0 -> +0 */
    }
    double u1 = uniform_double(r);
    double u2 = uniform_double(r);
    double radius = sqrt(-2.0 * log(1.0 - u2));
    double theta = 2.0 * M_PI * u1;
    r->next_normal = radius * sin(theta);
    r->has_next_normal = 1;
    return radius * cos(theta) + 0.0;
}

/* ---- the AVX2 fast path's math, as scalar float code ------------------- */
/* PyTorch's AVX2 normal kernel evaluates log, sin and cos with the Cephes-
 * derived single-precision approximations of "avx_mathfun" (log256_ps,
 * sincos256_ps), and GCC compiled them with FMA contraction (-mfma with the
 * default -ffp-contract=fast). To reproduce the bits we evaluate the same
 * polynomials with the same operation order, using fmaf() exactly where the
 * shipped binary (libtorch_cpu.so 1.13.1) uses a fused multiply-add. */

/* Cephes logf polynomial: log(1+x) ~ x - x^2/2 + x^3 P(x), x in [sqrt(.5)-1, sqrt(2)-1] */
static const float LOG_P[9] = {
    7.0376836292e-2f, -1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f, 1.4249322787e-1f,
    -1.6668057665e-1f, 2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f,
};
#define LOG_Q1 -2.12194440e-4f   /* ln 2 = Q2 + Q1: Q2 exact in few bits, Q1 the rest */
#define LOG_Q2 0.693359375f
#define SQRTHF 0.707106781186547524f

/* log(x) for x in [2^-24, 1] (the only inputs: 1 - uniform float). */
static float mathfun_logf(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float e = (float)((int32_t)(bits >> 23) - 127) + 1.0f;
    bits = (bits & 0x807fffffu) | 0x3f000000u;  /* keep the mantissa, exponent of 0.5 */
    float m;
    memcpy(&m, &bits, sizeof m);                /* x = m * 2^e, m in [0.5, 1) */
    /* move m into [sqrt(.5), sqrt(2)): m < sqrt(.5) becomes 2m with e - 1 */
    float extra = 0.0f;
    if (m < SQRTHF) {
        extra = m;
        e = e - 1.0f;
    }
    float t = extra + (m + -1.0f);              /* t = m - 1 (or 2m - 1), exact */
    float y = LOG_P[0];
    for (int k = 1; k < 9; k++) y = fmaf(y, t, LOG_P[k]);
    float z = t * t;
    y = t * y;
    y = fmaf(y, z, e * LOG_Q1);
    y = fmaf(-z, 0.5f, y);
    t = t + y;
    return fmaf(e, LOG_Q2, t);
}

/* Cephes sinf/cosf: reduce by pi/4 (j = nearest even octant), pi/4 split in
 * three parts so y*DP1 and y*DP2 are exact, then one polynomial per function
 * on [-pi/4, pi/4]; octant bits pick the polynomial and the signs. */
#define FOPI 1.27323954473516f          /* 4 / pi */
#define DP1 0.78515625f
#define DP2 2.4187564849853515625e-4f
#define DP3 3.77489497744594108e-8f
static const float SIN_P[3] = {-1.9515295891e-4f, 8.3321608736e-3f, -1.6666654611e-1f};
static const float COS_P[3] = {2.443315711809948e-5f, -1.388731625493765e-3f, 4.166664568298827e-2f};

static float xor_sign(float v, uint32_t sign)
{
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    b ^= sign;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* sin and cos of x for x in [0, 2 pi) (the only inputs: 2 pi * uniform). */
static void mathfun_sincosf(float x, float *s, float *c)
{
    uint32_t xb;
    memcpy(&xb, &x, sizeof xb);
    uint32_t sign_sin = xb & 0x80000000u;
    float ax = fabsf(x);
    int32_t j = (int32_t)(ax * FOPI);           /* truncation, as cvttps2dq */
    j = (j + 1) & ~1;
    float y = (float)j;
    sign_sin ^= ((uint32_t)j & 4u) << 29;
    uint32_t sign_cos = (~((uint32_t)j - 2u) & 4u) << 29;
    int swap = (j & 2) != 0;                    /* octants 2, 3 (mod 4): sin <-> cos */

    ax = fmaf(y, -DP1, ax);
    ax = fmaf(y, -DP2, ax);
    ax = fmaf(y, -DP3, ax);
    float z = ax * ax;

    float yc = fmaf(COS_P[0], z, COS_P[1]);   /* cos ~ 1 - z/2 + z^2 P(z) */
    yc = fmaf(z, yc, COS_P[2]);
    yc = z * yc;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;

    float ys = fmaf(SIN_P[0], z, SIN_P[1]);   /* sin ~ x + x z P(z) */
    ys = fmaf(z, ys, SIN_P[2]);
    ys = z * ys;
    ys = fmaf(ys, ax, ax);

    /* the SIMD code selects with bit masks and adds the other (zeroed) lane,
     * so a -0 turns into +0: keep the "+ 0.0f" */
    *s = xor_sign((swap ? yc : ys) + 0.0f, sign_sin);
    *c = xor_sign((swap ? ys : yc) + 0.0f, sign_cos);
}

/* normal_fill_16_AVX2: data[0..15] holds uniforms; pairs (j, j+8) become
 * Box-Muller normals. The trailing "+ 0.0f" is PyTorch's fma(n, std=1,
 * mean=0), which only changes -0 into +0. */
static void normal_block16(float *d)
{
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];                 /* in (0, 1]: log never sees 0 */
        float radius = sqrtf(mathfun_logf(u1) * -2.0f);
        float theta = (float)(2.0 * M_PI) * d[j + 8];
        float s, c;
        mathfun_sincosf(theta, &s, &c);
        d[j] = radius * c + 0.0f;
        d[j + 8] = radius * s + 0.0f;
    }
}

/* torch.randn(n) (float32, contiguous):
 *  - n < 16: element by element through normal_distribution<double> (uses
 *    and refills the generator's cached normal), each rounded to float.
 *  - n >= 16: the vectorised kernel. It first draws n uniform floats, then
 *    transforms blocks of 16 in place. When n % 16 != 0 the tail does not
 *    fill a block, so PyTorch redraws 16 fresh uniforms over the LAST 16
 *    elements (overlapping the previous block) and transforms them again.
 *    This path never reads or writes the cached normal. */
void da_randn(da_rng *r, float *out, size_t n)
{
    if (n < 16) {
        for (size_t i = 0; i < n; i++) out[i] = (float)normal_double(r);
        return;
    }
    da_rand(r, out, n);
    for (size_t i = 0; i + 16 <= n; i += 16) normal_block16(out + i);
    if (n % 16 != 0) {
        da_rand(r, out + n - 16, 16);
        normal_block16(out + n - 16);
    }
}

/* torch.randint(low, high, (n,)), int64: range = high - low (mod 2^64);
 * ranges >= 2^32 draw random64(), smaller ones one 32-bit draw; the value is
 * draw % range + low (plain modulo, so slightly biased, like PyTorch). */
da_status da_randint(da_rng *r, int64_t *out, size_t n, int64_t low, int64_t high)
{
    if (high <= low)
        return da_fail(DA_ERR_INVALID, "randint: need low < high, got [%lld, %lld)",
                       (long long)low, (long long)high);
    uint64_t range = (uint64_t)high - (uint64_t)low;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = range >= (1ull << 32) ? da_rng_u64(r) : da_rng_u32(r);
        out[i] = (int64_t)(v % range + (uint64_t)low);
    }
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* The state as text (checkpoint metadata): fixed widths, lowercase hex.    */
/* ------------------------------------------------------------------------ */

void da_rng_to_text(const da_rng *r, char buf[DA_RNG_TEXT])
{
    uint64_t bits;
    memcpy(&bits, &r->next_normal, sizeof bits);
    int k = sprintf(buf, "%03x %d %016llx", (unsigned)r->index, r->has_next_normal ? 1 : 0, (unsigned long long)bits);
    for (int i = 0; i < MT_N; i++) k += sprintf(buf + k, " %08x", (unsigned)r->mt[i]);
}

/* width lowercase hex digits at s, nothing else */
static int hex_field(const char *s, int width, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < width; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

int da_rng_from_text(da_rng *r, const char *s)
{
    if (!s || strlen(s) != DA_RNG_TEXT - 1) return -1;
    uint64_t idx, bits, w;
    if (hex_field(s, 3, &idx) || s[3] != ' ' || (s[4] != '0' && s[4] != '1') || s[5] != ' ' ||
        hex_field(s + 6, 16, &bits) || idx > MT_N)
        return -1;
    da_rng tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.index = (int)idx;
    tmp.has_next_normal = s[4] == '1';
    memcpy(&tmp.next_normal, &bits, sizeof bits);
    const char *p = s + 22;   /* "iii h nnnnnnnnnnnnnnnn" */
    for (int i = 0; i < MT_N; i++, p += 9) {
        if (p[0] != ' ' || hex_field(p + 1, 8, &w)) return -1;
        tmp.mt[i] = (uint32_t)w;
    }
    *r = tmp;   /* only a fully valid text changes r */
    return 0;
}
