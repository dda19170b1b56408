/* Shared helpers for the cmocka suites: deterministic test data, tolerance
 * checks that report the worst index, finite-difference gradient checks,
 * thread-count determinism checks and PyTorch reference files. */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dalign.h"

#define TU_MAX_IN 4

/* Deterministic uniform floats in [lo, hi) from a small LCG (independent of
 * da_rng, so op tests do not depend on the RNG module). */
void tu_fill(float *x, size_t n, uint32_t seed, float lo, float hi);
float *tu_alloc_fill(size_t n, uint32_t seed, float lo, float hi); /* malloc'd */
/* Start values for a gradient buffer, so that a backward which overwrites
 * instead of adding shows: pseudo-random signs and magnitudes in
 * [0.5, 1) * scale (never zero, never one constant). */
void tu_grad_pattern(float *g, size_t n, uint32_t seed, float scale);

/* Fail the test when any |got - want| > atol + rtol*|want|; the message names
 * `what`, the worst index, both values and the error. */
void tu_assert_close(const char *what, const float *got, const float *want, size_t n,
                     double atol, double rtol);
/* Fail unless bit-identical. */
void tu_assert_bits(const char *what, const float *got, const float *want, size_t n);

/* A graph under test: builds the op(s) from leaf inputs, returns the output. */
typedef da_tensor *(*tu_build_fn)(da_tape *t, da_tensor **in, void *ctx);

typedef struct tu_case {
    int n_in;
    int ndim[TU_MAX_IN];
    int shape[TU_MAX_IN][DA_MAX_DIMS];
    float *data[TU_MAX_IN];      /* input values, caller-owned */
    int needs_grad[TU_MAX_IN];   /* 0: constant input (no gradient) */
} tu_case;

/* Forward + backward with upstream gradient dout (NULL: use a fixed
 * pseudo-random dout). Results are malloc'd; free with tu_result_free.
 * grad holds the gradients from zero-filled buffers (exact, for bit-level
 * comparisons). tu_run also runs the backward a second time with every
 * gradient buffer starting at tu_grad_pattern values and fails the test
 * unless final - start equals grad (up to the rounding of the additions):
 * backward must ADD into gradient buffers. tu_gradcheck, tu_oracle_case and
 * tu_check_threads all go through tu_run. */
typedef struct tu_result {
    float *out;
    size_t out_n;
    int out_ndim;
    int out_shape[DA_MAX_DIMS];
    float *grad[TU_MAX_IN];      /* NULL where needs_grad == 0 */
} tu_result;
tu_result tu_run(tu_build_fn fn, void *ctx, const tu_case *c, const float *dout);
void tu_result_free(tu_result *r);

/* Central finite differences of L = sum(out * dout_fixed), evaluated with the
 * forward in f32 and L accumulated in double, against the tape's gradients.
 * Checks every element of every input with needs_grad. */
void tu_gradcheck(const char *what, tu_build_fn fn, void *ctx, const tu_case *c,
                  double eps, double atol, double rtol);

/* Output and every gradient bit-identical with 1 and 2 threads. */
void tu_check_threads(const char *what, tu_build_fn fn, void *ctx, const tu_case *c);

/* PyTorch reference files (tests/oracle/NAME.safetensors). tu_oracle aborts
 * the test when the file is missing; tu_ref returns a tensor's data as a
 * malloc'd f32 array and checks its element count (0 = any). */
da_safetensors *tu_oracle(const char *file);
float *tu_ref(da_safetensors *st, const char *name, size_t expect_n);
/* Shape of a reference tensor into a tu_case input slot; returns ndim. */
int tu_ref_shape(da_safetensors *st, const char *name, int *shape);



/* Every parameter gradient of p against the reference PREFIX<name> (e.g.
 * "grad."): |err| <= rel * scale, scale = max(max|ref| of the tensor,
 * floor * max|ref| over all tensors). floor > 0 covers gradients that are
 * zero in exact arithmetic (their reference is rounding noise). Fails on the
 * worst tensor (largest err / scale), so one message names it;
 * DA_TEST_VERBOSE prints the worst ratio. */
void tu_compare_params(da_safetensors *st, const char *prefix, const da_params *p, double rel, double floor);

/* Run one PyTorch reference case: inputs CASE.<input_names[i]> (shapes from
 * the file), upstream gradient CASE.dout; compare the output with CASE.out
 * and each input's gradient with CASE.grad.<name> (inputs whose gradient the
 * file lacks are treated as constants). Tolerances: |err| <= atol + rtol*|want|. */
void tu_oracle_case(da_safetensors *st, const char *case_name, tu_build_fn fn, void *ctx,
                    const char *const *input_names, int n_in, double atol, double rtol);

/* Largest |x[i]|. */
float tu_max_abs(const float *x, size_t n);
/* got vs the reference tensor `name`: |err| <= rel * max(max|ref|, floor),
 * i.e. a tolerance relative to the tensor's scale (f32 vs f32 summation-order
 * noise grows with the largest terms, not with each element). Prints the
 * ratio with DA_TEST_VERBOSE set. */
void tu_check_scaled(da_safetensors *st, const char *name, const float *got, size_t n, double rel,
                     double floor);

/* ---- command-line fixtures ---------------------------------------------- */

/* Write a complete weights directory of tiny randomly initialised models
 * (seeded: the same bits every call) into dir, creating it: text_encoder,
 * clip, vae, unet, reward_net, each NAME.json + NAME.safetensors. Fast
 * enough for any test that only needs the plumbing, not image quality.
 * 0 on success. */
int tu_tiny_weights(const char *dir);
/* The dalign binary of the variant this suite was built in
 * (build/<variant>/dalign, next to build/<variant>/tests/), or "" when it is
 * missing. */
const char *tu_cli_path(void);
/* How to start that binary: $DA_TEST_RUNNER (`make check TEST_RUNNER=...`,
 * e.g. qemu-aarch64 for a cross build) in front of tu_cli_path(), or the path
 * alone. tu_cli_cmd is the command prefix for system() ("" when the binary is
 * missing); tu_cli_argv fills argv (cap entries) with the runner's words, the
 * binary and then args (NULL-terminated) for execvp(argv[0], argv), and
 * returns the argument count. */
const char *tu_cli_cmd(void);
int tu_cli_argv(char **argv, int cap, const char *const *args);
/* rm -r dir (no symlinks followed); missing dir is fine */
void tu_rm_tree(const char *dir);
/* A whole file, malloc'd and NUL-terminated so text can go to strstr or the
 * JSON parser; *n gets its size in bytes (n may be NULL). A regular file:
 * the size comes from fseek. Fails the test, naming path, when the file
 * cannot be read. */
char *tu_slurp(const char *path, size_t *n);
/* 1 when the two files hold the same bytes (tu_slurp's failures apply) */
int tu_same_file(const char *a, const char *b);
#endif
