/* Array versions of the elementary functions (dalign/core.h): out[i] =
 * da_expf(in[i]) and so on, with the bits of the scalar functions for every
 * float input, on every machine and vector width.
 *
 * Each is a loop over core/mathf.h's branch-free *_lane form, which performs
 * the scalar function's double operations in the same order, so GCC
 * vectorises it (-O2 on baseline x86-64: SSE2, two doubles per register;
 * wider in the avx2 and avx512 copies, core/vec.h; NEON on aarch64) and
 * IEEE-754 gives every lane the scalar result. tests/test_mathf.c compares the two bit for bit.
 *
 * Blocks: the loop runs over BLK values at a time, a constant trip count,
 * because GCC's -O2 cost model ("very cheap") vectorises a loop only when
 * no scalar remainder loop is needed. The input block is copied first, so
 * out may be in (the loop then cannot alias), and the last partial block is
 * padded with zeros in a local buffer. One thread: the ops that call these
 * split their work over threads themselves. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <string.h>

#include "core/mathf.h"
#include "core/vec.h"
#include "dalign/core.h"

#define BLK MATHF_BLK
_Static_assert(BLK % EXPF_N_STEP == 0, "expf_block's exps go EXPF_N_STEP at a time");

typedef void (*block_fn)(float *y, const float *x);

/* y (BLK) = f(x (BLK)), one loop per function: each vectorises (erf's
 * block, which packs the inputs that need its pieces, is core/mathf.h's
 * erff_block) */
static void expf_block(float *y, const float *x)
{
    float xb[BLK];
    memcpy(xb, x, sizeof xb);
    EXPF_N(y, xb, BLK);
}

static void logf_block(float *y, const float *x)
{
    float xb[BLK];
    memcpy(xb, x, sizeof xb);
    for (int i = 0; i < BLK; i++) y[i] = logf_lane(xb[i]);
}

static void log1pf_block(float *y, const float *x)
{
    float xb[BLK];
    memcpy(xb, x, sizeof xb);
    for (int i = 0; i < BLK; i++) y[i] = log1pf_lane(xb[i]);
}

static void tanhf_block(float *y, const float *x)
{
    float xb[BLK];
    memcpy(xb, x, sizeof xb);
    for (int i = 0; i < BLK; i++) y[i] = tanhf_lane(xb[i]);
}

/* whole blocks in place, then the rest through a zero-padded buffer */
static void over_blocks(block_fn f, float *out, const float *in, size_t n)
{
    size_t whole = n - n % BLK;
    for (size_t b = 0; b < whole; b += BLK) f(out + b, in + b);
    size_t rest = n - whole;
    if (rest) {
        float buf[BLK] = {0};
        memcpy(buf, in + whole, rest * sizeof(float));
        f(buf, buf);
        memcpy(out + whole, buf, rest * sizeof(float));
    }
}

void VEC_FN(da_expf_n)(float *out, const float *in, size_t n) { over_blocks(expf_block, out, in, n); }
void VEC_FN(da_logf_n)(float *out, const float *in, size_t n) { over_blocks(logf_block, out, in, n); }
void VEC_FN(da_log1pf_n)(float *out, const float *in, size_t n) { over_blocks(log1pf_block, out, in, n); }
void VEC_FN(da_tanhf_n)(float *out, const float *in, size_t n) { over_blocks(tanhf_block, out, in, n); }
void VEC_FN(da_erff_n)(float *out, const float *in, size_t n) { over_blocks(erff_block, out, in, n); }
