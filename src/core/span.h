/* Internal to src/core: elementwise loops over a span of n floats that the
 * compiler vectorises.
 *
 * At -O2, GCC vectorises a loop only when the vector code replaces it
 * whole (its "very cheap" cost model): no scalar remainder loop, no runtime
 * test that out does not overlap the inputs. A plain loop over a runtime n
 * therefore stays scalar, one value per instruction. These helpers run
 * their body over DA_SPAN values at a time, a constant trip count, reading
 * each chunk into a local copy first (so out may be an input), and the last
 * n % DA_SPAN values one at a time. Every element gets the same single
 * IEEE-754 operation either way, so the bits are those of the plain loop.
 * (The kernels of vec_*.c use the same pattern, compiled per instruction
 * set; these are for the light loops of the ops, compiled once.) */
#ifndef DA_CORE_SPAN_H
#define DA_CORE_SPAN_H

#include <stddef.h>
#include <string.h>

#define DA_SPAN 16

/* A loop over a fixed number of lanes (at most 8), unrolled: each lane's
 * running value (a sum, a max) then lives in a register of its own; in an
 * array indexed by a loop variable it went through memory on every step. */
#if defined(__GNUC__) && !defined(__clang__)
#define DA_UNROLL_LANES _Pragma("GCC unroll 8")
#else
#define DA_UNROLL_LANES
#endif

/* out (n) = a (n) + b (n) / a - b / a * b */
#define DA_SPAN_BINARY(name, expr)                                           \
    static inline void name(float *out, const float *a, const float *b, size_t n) \
    {                                                                        \
        size_t i = 0;                                                        \
        for (; i + DA_SPAN <= n; i += DA_SPAN) {                             \
            float x[DA_SPAN], y[DA_SPAN];                                    \
            memcpy(x, a + i, sizeof x);                                      \
            memcpy(y, b + i, sizeof y);                                      \
            for (int k = 0; k < DA_SPAN; k++) out[i + k] = expr(x[k], y[k]); \
        }                                                                    \
        for (; i < n; i++) out[i] = expr(a[i], b[i]);                        \
    }
#define DA_SPAN_ADD_(x, y) ((x) + (y))
#define DA_SPAN_SUB_(x, y) ((x) - (y))
#define DA_SPAN_MUL_(x, y) ((x) * (y))
DA_SPAN_BINARY(da_span_add, DA_SPAN_ADD_)
DA_SPAN_BINARY(da_span_sub, DA_SPAN_SUB_)
DA_SPAN_BINARY(da_span_mul, DA_SPAN_MUL_)

/* out (n) = a (n) + c / a (n) - c / a (n) * c, c one value */
#define DA_SPAN_SCALAR(name, expr)                                            \
    static inline void name(float *out, const float *a, float c, size_t n)    \
    {                                                                         \
        size_t i = 0;                                                         \
        for (; i + DA_SPAN <= n; i += DA_SPAN) {                              \
            float x[DA_SPAN];                                                 \
            memcpy(x, a + i, sizeof x);                                       \
            for (int k = 0; k < DA_SPAN; k++) out[i + k] = expr(x[k], c);     \
        }                                                                     \
        for (; i < n; i++) out[i] = expr(a[i], c);                            \
    }
DA_SPAN_SCALAR(da_span_add_scalar, DA_SPAN_ADD_)
DA_SPAN_SCALAR(da_span_sub_scalar, DA_SPAN_SUB_)
DA_SPAN_SCALAR(da_span_mul_scalar, DA_SPAN_MUL_)

#endif
