/* One thread count for dalign's OpenMP loops, and the GEMM backend.
 *
 * OpenBLAS never threads on its own: dalign cuts every GEMM into pieces
 * (gemm.c) and runs each piece as a single-threaded call. We still pin
 * OpenBLAS to one thread here, for builds linked against its pthread
 * flavour. In its OpenMP flavour openblas_set_num_threads also sets
 * OpenMP's thread count, so it goes first and ours second. */
#include <stdlib.h>
#include <unistd.h>

#include "dalign/core.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef DA_USE_OPENBLAS
#include <cblas.h>
#endif

static int n_threads = 1;

static int cores_online(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void da_set_threads(int n)
{
    if (n <= 0) n = cores_online();
#ifndef _OPENMP
    n = 1; /* built without OpenMP: everything runs on the calling thread */
#endif
#ifdef DA_USE_OPENBLAS
    openblas_set_num_threads(1);
#endif
    n_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int da_get_threads(void) { return n_threads; }

void da_threads_init(void)
{
    const char *env = getenv("DA_THREADS");
    char *end = NULL;
    long n = env && *env ? strtol(env, &end, 10) : 0;
    if (env && *env && (*end || n < 1 || n > 4096)) {
        /* a typo must not turn into "all cores" silently (the CLI refuses it outright) */
        da_log(DA_LOG_WARN, "dalign: ignoring DA_THREADS='%s': not a thread count in [1, 4096]; using all cores",
               env);
        n = 0;
    }
    da_set_threads((int)n);
    const char *gemm = getenv("DA_GEMM");
    if (gemm && *gemm && da_gemm_set_backend(gemm) != DA_OK)
        da_log(DA_LOG_WARN, "dalign: ignoring DA_GEMM: %s", da_last_error());
}
