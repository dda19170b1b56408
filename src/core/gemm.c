/* GEMM dispatch: OpenBLAS's cblas_sgemm when built with it, otherwise the
 * portable kernel in gemm_portable.c. */
#include "dalign.h"

#ifdef DA_USE_OPENBLAS
#include <cblas.h>
#endif

void da_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
#ifdef DA_USE_OPENBLAS
    /* BLAS semantics: with alpha == 0 or K == 0, A and B are not read
     * (OpenBLAS 0.3.21 reads them anyway and lets a NaN through). */
    if (alpha == 0.0f || K <= 0) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *c = &C[(size_t)i * ldc + j];
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc);
#else
    da_gemm_portable(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

const char *da_gemm_backend(void)
{
#ifdef DA_USE_OPENBLAS
    return "openblas";
#else
    return "portable";
#endif
}
