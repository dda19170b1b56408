/* Internal to src/core: the portable GEMM with op(B) that is never stored.
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

typedef void (*da_gemm_pack_b_fn)(const void *ctx, float *dst, int nr, int j0, int cols, int p0, int kc);

/* C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C, op(B) from pack_b(ctx, ...) */
void da_gemm_portable_packed(int trans_a, int M, int N, int K, float alpha, const float *A, int lda,
                             da_gemm_pack_b_fn pack_b, const void *ctx, float beta, float *C, int ldc);

#endif
