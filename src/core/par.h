/* Internal to src/core: when a kernel's loop is worth a parallel region.
 *
 * Opening a region wakes the other threads: with OMP_WAIT_POLICY=passive
 * (what make check and make bench use, so that idle threads leave the cores
 * to other work) a futex call per thread, tens of microseconds, and the
 * caller waits for the slowest. An op over a few thousand floats (a UNet
 * layer at batch 1 on an 8x8 latent) takes a few microseconds alone, so a
 * UNet forward at batch 1 ran 3x slower on 2 threads than on 1. Loops over
 * less than da_par_min floats of work therefore run on the calling thread:
 *
 *   #pragma omp parallel for schedule(static) DA_PAR_IF(n)
 *
 * (OpenMP pragmas are macro-expanded.) Results never depend on it: every
 * kernel gives the same bits for any thread count. */
#ifndef DA_CORE_PAR_H
#define DA_CORE_PAR_H

#ifdef _OPENMP
#include <omp.h>
#endif

/* Floats of work below which a loop runs on the calling thread: 32768 by
 * default; the environment variable DA_PAR_MIN sets it at start (make
 * check sets 0, so that the 1 vs 2 threads tests, whose tensors are small,
 * still run every loop split over threads). */
extern double da_par_min;
#define DA_PAR_IF(work) if ((double)(work) >= da_par_min)

/* Whether a loop over `work` floats should not open a parallel region at
 * all: too little work (DA_PAR_IF's rule), one thread, or already inside a
 * region (the pieces of a batch, where a nested region gets one thread).
 * DA_PAR_IF still opens a region, of one thread, and libgomp ends every
 * region with a futex wake, a system call: 1.2 us alone on the 2-core EPYC
 * VM, and more in a model. Sampling at batch 1 opened some 3000 such
 * regions outside the GEMMs (and 5000 in them, gemm_run); without them, and
 * without the GEMM's, it runs 16% faster on one thread (docs/benchmarks.md).
 * The hot loops therefore run through DA_PAR_FOR (below) instead. */
static inline int da_par_serial(double work)
{
#ifdef _OPENMP
    return work < da_par_min || omp_get_max_threads() == 1 || omp_in_parallel();
#else
    (void)work;
    return 1;
#endif
}

/* DA_PAR_FOR(work, for (...) statement): the loop, split over the threads
 * with schedule(static), or, when da_par_serial(work), run as a plain loop
 * that opens no region. Written once, expanded into both. */
#define DA_PAR_FOR(work, ...)                                              \
    do {                                                                   \
        if (da_par_serial(work)) {                                         \
            __VA_ARGS__;                                                   \
        } else {                                                           \
            _Pragma("omp parallel for schedule(static)") __VA_ARGS__;      \
        }                                                                  \
    } while (0)

#endif
