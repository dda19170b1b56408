/* Internal to src/core: the portable GEMM with op(B) that is never stored,
 * and the GEMM (either backend) with biases added to its sums, by the
 * portable kernel's epilogue.
 *
 * da_gemm_portable packs op(B) into slivers of nr columns, kc rows at a
 * time, before its micro-kernel reads them. A caller whose op(B) is a view
 * of other data, such as a convolution's column matrix (every patch of the
 * images, ops_conv.c), can instead write those slivers itself, straight
 * from the data, and the matrix is never materialised. The packer fills
 * dst with op(B)[p0 : p0+kc, j0 : j0+cols] as slivers of (kc, nr), sliver
 * s at dst + s*kc*nr with row p at + p*nr, and zeros in the columns of a
 * last, partial sliver past cols. The sums, and so the bits, are those of
 * da_gemm_portable on the materialised op(B). */
#ifndef DA_CORE_GEMM_PACKER_H
#define DA_CORE_GEMM_PACKER_H

#include <stddef.h>

typedef void (*da_gemm_pack_b_fn)(const void *ctx, float *dst, int nr, int j0, int cols, int p0, int kc);

/* C (M, N) = op(A) (M, K) @ op(B) (K, N) (+ bias_r[i] on row i, when not
 * NULL), op(B) from pack_b(ctx, ...) */
void da_gemm_portable_packed(int trans_a, int M, int N, int K, const float *A, int lda, da_gemm_pack_b_fn pack_b,
                             const void *ctx, float *C, int ldc, const float *bias_r);

/* C (M, N) = op(A) (M, K) @ op(B) (K, N) + biases: each element's sum s
 * (the k-ordered sum of da_gemm_portable) becomes s + bias_c[j] (bias_c
 * (N), a column's), then + bias_r[i] (bias_r (M), a row's); either may be
 * NULL. The bits of da_gemm_portable with alpha 1, beta 0 and then passes
 * adding the biases, but the adds happen in the micro-kernel's registers,
 * on the last K slice, instead of passes over C. */
void da_gemm_portable_bias(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                           const float *B, int ldb, float *C, int ldc, const float *bias_c, const float *bias_r);

/* da_gemm_items (alpha 1, beta 0) with those biases on every item, under
 * either backend: the portable GEMM adds them in its epilogue (items merged
 * into one GEMM only where the biases follow: a column's bias over rows
 * stacked, a row's over columns side by side), OpenBLAS's results get the
 * passes */
void da_gemm_items_bias(int items, size_t stride_a, size_t stride_b, size_t stride_c, int trans_a, int trans_b,
                        int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                        const float *bias_c, const float *bias_r);

#endif
