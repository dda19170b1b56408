/* Internal to src/core: the vector kernels, built once per instruction set
 * and chosen at run time.
 *
 * The files src/core/vec_*.c hold the loops where dalign spends its time
 * outside the GEMMs: the array elementary functions (vec_math.c), the
 * activations (vec_act.c) and the normalisations (vec_norm.c). The
 * Makefile compiles each of them once per instruction set of the target:
 *
 *   base     the target's baseline (x86-64: SSE2; aarch64: NEON)
 *   avx2     -mavx2                      (x86-64 only)
 *   avx512   -mavx512f -mavx512bw ...    (x86-64 only)
 *
 * with -DDA_VEC_ISA=<name>, so VEC_FN(da_silu_forward) names the copy
 * da_silu_forward_avx2 and so on. src/core/isa.c picks one table of
 * copies at start (the widest the CPU runs, or DA_ISA / da_set_isa), and
 * the public functions (da_silu_forward, ...) call through it.
 *
 * Same bits in every copy: the kernels are plain C loops of IEEE-754
 * operations on floats and doubles, with no multiply-add fused
 * (-ffp-contract=off; no -mfma flag either) and every sum in a fixed
 * order written out in the source (lanes side by side, never a
 * reassociated reduction), so a wider vector computes each element with
 * the same operations as the scalar code. tests/test_isa.c compares every
 * kernel of every copy the machine runs with the base copy, bit for bit. */
#ifndef DA_CORE_VEC_H
#define DA_CORE_VEC_H

#include <stddef.h>

/* Every kernel: name, parameter list, argument list (for the calls). */
#define DA_VEC_KERNELS(X)                                                                                  \
    X(da_expf_n, (float *out, const float *in, size_t n), (out, in, n))                                   \
    X(da_logf_n, (float *out, const float *in, size_t n), (out, in, n))                                   \
    X(da_log1pf_n, (float *out, const float *in, size_t n), (out, in, n))                                 \
    X(da_tanhf_n, (float *out, const float *in, size_t n), (out, in, n))                                  \
    X(da_erff_n, (float *out, const float *in, size_t n), (out, in, n))                                   \
    X(da_silu_forward, (float *out, const float *inp, size_t n), (out, inp, n))                           \
    X(da_silu_backward, (float *dinp, const float *dout, const float *inp, size_t n), (dinp, dout, inp, n)) \
    X(da_gelu_forward, (float *out, const float *inp, size_t n), (out, inp, n))                           \
    X(da_gelu_backward, (float *dinp, const float *dout, const float *inp, size_t n), (dinp, dout, inp, n)) \
    X(da_gelu_tanh_forward, (float *out, const float *inp, size_t n), (out, inp, n))                      \
    X(da_gelu_tanh_backward, (float *dinp, const float *dout, const float *inp, size_t n),                \
      (dinp, dout, inp, n))                                                                                \
    X(da_log_sigmoid_forward, (float *out, const float *inp, size_t n), (out, inp, n))                    \
    X(da_log_sigmoid_backward, (float *dinp, const float *dout, const float *inp, size_t n),              \
      (dinp, dout, inp, n))                                                                                \
    X(da_groupnorm_forward,                                                                                \
      (float *out, float *mean, float *rstd, const float *inp, const float *gamma, const float *beta,     \
       int N, int C, int S, int G, float eps),                                                             \
      (out, mean, rstd, inp, gamma, beta, N, C, S, G, eps))                                                \
    X(da_groupnorm_silu_forward,                                                                           \
      (float *out, float *normed, float *mean, float *rstd, const float *inp, const float *gamma,         \
       const float *beta, int N, int C, int S, int G, float eps),                                          \
      (out, normed, mean, rstd, inp, gamma, beta, N, C, S, G, eps))                                        \
    X(da_groupnorm_backward,                                                                               \
      (float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp, const float *gamma, \
       const float *mean, const float *rstd, int N, int C, int S, int G),                                  \
      (dinp, dgamma, dbeta, dout, inp, gamma, mean, rstd, N, C, S, G))

/* One copy of every kernel: a table field per kernel */
#define DA_VEC_FIELD(name, params, args) void(*name) params;
typedef struct da_vec_table {
    const char *isa;
    DA_VEC_KERNELS(DA_VEC_FIELD)
} da_vec_table;
#undef DA_VEC_FIELD

/* The copy in use (src/core/isa.c) */
extern const da_vec_table *da_vec;

/* Whether the copy in use runs AVX2 (the avx2 and avx512 copies): the files
 * built for the baseline (the GEMM driver, conv2d's packing, the attention
 * softmax) then take their target("avx2") twins (isa.c) */
int da_vec_avx2(void);

/* Inside a vec_*.c file: VEC_FN(da_silu_forward) = da_silu_forward_<isa> */
#ifndef DA_VEC_ISA
#define DA_VEC_ISA base   /* the Makefile passes avx2 and avx512 for the other copies */
#endif
#define VEC_CAT2(a, b) a##_##b
#define VEC_CAT(a, b) VEC_CAT2(a, b)
#define VEC_FN(name) VEC_CAT(name, DA_VEC_ISA)

/* The copies' prototypes, for isa.c's tables */
#define DA_VEC_PROTO(isa, name, params) void name##_##isa params;
#define DA_VEC_PROTO_BASE(name, params, args) DA_VEC_PROTO(base, name, params)
#define DA_VEC_PROTO_AVX2(name, params, args) DA_VEC_PROTO(avx2, name, params)
#define DA_VEC_PROTO_AVX512(name, params, args) DA_VEC_PROTO(avx512, name, params)
DA_VEC_KERNELS(DA_VEC_PROTO_BASE)
#if defined(DA_VEC_X86)   /* the Makefile builds the x86-64 copies */
DA_VEC_KERNELS(DA_VEC_PROTO_AVX2)
DA_VEC_KERNELS(DA_VEC_PROTO_AVX512)
#endif

#endif
