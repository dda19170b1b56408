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
