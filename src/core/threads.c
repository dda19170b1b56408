/* One thread count for OpenMP loops and OpenBLAS.
 *
 * OpenBLAS (Debian's pthread flavour) keeps its own pool. We never call sgemm
 * from inside an OpenMP region, so the two pools are never busy at the same
 * time; pinning both to the same count keeps the machine from oversubscribing. */
#include <stdlib.h>
#include <unistd.h>

#include "dalign.h"

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
    n_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
#ifdef DA_USE_OPENBLAS
    openblas_set_num_threads(n);
#endif
}

int da_get_threads(void) { return n_threads; }

void da_threads_init(void)
{
    const char *env = getenv("DA_THREADS");
    da_set_threads(env ? atoi(env) : 0);
}
