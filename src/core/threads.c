/* One thread count for dalign's OpenMP loops, and the GEMM backend.
 *
 * OpenBLAS never threads on its own: dalign cuts every GEMM into pieces
 * (gemm.c) and runs each piece as a single-threaded call. We still pin
 * OpenBLAS to one thread here, for builds linked against its pthread
 * flavour. In its OpenMP flavour openblas_set_num_threads also sets
 * OpenMP's thread count, so it goes first and ours second. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/par.h"
#include "dalign/core.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef DA_USE_OPENBLAS
#include <cblas.h>
#endif

static int n_threads = 1;

/* core/par.h: the work below which a loop does not open a parallel region */
double da_par_min = 32768.0;

#if defined(__GNUC__)
__attribute__((constructor)) static void par_min_init(void)
{
    const char *env = getenv("DA_PAR_MIN");
    char *end = NULL;
    double v = env && *env ? strtod(env, &end) : -1.0;
    if (env && *env && !*end && v >= 0.0) da_par_min = v;
}
#endif

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
    const char *tile = getenv("DA_GEMM_TILE");
    if (tile && *tile && da_gemm_set_tile(tile) != DA_OK)
        da_log(DA_LOG_WARN, "dalign: ignoring DA_GEMM_TILE: %s", da_last_error());
    const char *isa = getenv("DA_ISA");
    if (isa && *isa && da_set_isa(isa) != DA_OK) da_log(DA_LOG_WARN, "dalign: ignoring DA_ISA: %s", da_last_error());
}

/* ---- coarse threading ---------------------------------------------------- */

#define MAX_PIECES 64

int da_pieces(int n_items)
{
    if (n_items < 1) return 1;
#ifdef _OPENMP
    if (omp_in_parallel()) return 1;
#endif
    int n = n_threads < n_items ? n_threads : n_items;
    return n < MAX_PIECES ? n : MAX_PIECES;
}

da_status da_run_pieces(int n_items, da_piece_fn fn, void *ctx)
{
    int np = da_pieces(n_items);
    if (np == 1) return fn(ctx, 0, 0, n_items);
    da_status st[MAX_PIECES];
    char msg[MAX_PIECES][512];   /* a failing piece's message: last_error is per thread */
#ifdef _OPENMP
#pragma omp parallel for num_threads(np) schedule(static, 1)
#endif
    for (int w = 0; w < np; w++) {
        int i0 = (int)((long long)n_items * w / np), i1 = (int)((long long)n_items * (w + 1) / np);
        st[w] = fn(ctx, w, i0, i1 - i0);
        if (st[w] != DA_OK) snprintf(msg[w], sizeof msg[w], "%s", da_last_error());
    }
    for (int w = 0; w < np; w++)
        if (st[w] != DA_OK) return da_fail(st[w], "%s", msg[w]);
    return DA_OK;
}
