/* dalign/core.h: the core layer (src/core), the lowest: status codes and
 * messages, the log, threads, elementary functions with the same bits everywhere,
 * the arena, tensors and the autograd tape, GEMM, the op kernels and their
 * tape wrappers, AdamW and the LR schedule, the PyTorch-compatible RNG,
 * safetensors, the progress bar and the JSONL metrics log. It includes no
 * other dalign header. dalign.h states the conventions of the whole API. */
#ifndef DALIGN_CORE_H
#define DALIGN_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DA_API marks the public API: the functions declared in include/dalign/
 * with it are the only symbols libdalign.so exports (it is built with
 * -fvisibility=hidden; libdalign.a holds every function, internal ones
 * too). docs/architecture.md, "Public API", says what is public. */
#if defined(__GNUC__)
#define DA_API __attribute__((visibility("default")))
#else
#define DA_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

/* The version of these headers. libdalign.so's SONAME carries the major
 * number (libdalign.so.0); da_version() and da_version_number() give the
 * version of the library a program runs with, which can be a later build
 * than the headers it was compiled with. */
#define DA_VERSION_MAJOR 0
#define DA_VERSION_MINOR 2
#define DA_VERSION_PATCH 0
/* one integer that orders versions: MAJOR * 10000 + MINOR * 100 + PATCH */
#define DA_VERSION_NUMBER (DA_VERSION_MAJOR * 10000 + DA_VERSION_MINOR * 100 + DA_VERSION_PATCH)
#define DA_VERSION_STR_(x) #x
#define DA_VERSION_STR(x) DA_VERSION_STR_(x)
/* "MAJOR.MINOR.PATCH" */
#define DA_VERSION \
    DA_VERSION_STR(DA_VERSION_MAJOR) "." DA_VERSION_STR(DA_VERSION_MINOR) "." DA_VERSION_STR(DA_VERSION_PATCH)

DA_API const char *da_version(void);   /* DA_VERSION of the library (src/core/version.c) */
DA_API int da_version_number(void);    /* DA_VERSION_NUMBER of the library */

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

typedef enum da_status {
    DA_OK = 0,
    DA_ERR_INVALID,   /* bad argument or bad user input */
    DA_ERR_IO,        /* open/read/write/rename failed */
    DA_ERR_FORMAT,    /* malformed file */
    DA_ERR_NOMEM,     /* allocation failed */
    DA_ERR_RANGE      /* size or index out of range, arithmetic overflow */
} da_status;

DA_API const char *da_strerror(da_status status);   /* generic text for a code */
DA_API const char *da_last_error(void);             /* message of the last failure on this thread */
/* Record a failure message (printf-style) and return `status`, so callers can
 * write `return da_fail(DA_ERR_FORMAT, "bad dtype %s", d);` */
DA_API da_status da_fail(da_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Checked size arithmetic: *out = a * b (or a + b) when it fits in size_t;
 * otherwise DA_ERR_RANGE with a message naming `what` (the buffer or the
 * tensor being sized), *out unchanged. For sizes from configs and files,
 * where the factors come from a user. */
DA_API da_status da_size_mul(size_t a, size_t b, const char *what, size_t *out);
DA_API da_status da_size_add(size_t a, size_t b, const char *what, size_t *out);

/* A user's text (a prompt) fit for an error message: text itself when it
 * has at most `max_chars` bytes, else its first max_chars bytes (cut at a
 * character boundary), then "... (N bytes)". Writes into buf (cap bytes,
 * DA_EXCERPT_CAP is enough for max_chars 80) and returns buf; NULL text
 * gives "(null)". A 100 KB prompt never reaches stderr whole. */
#define DA_EXCERPT_CAP 128
DA_API const char *da_excerpt(const char *text, size_t max_chars, char *buf, size_t cap);

/* ------------------------------------------------------------------------ */
/* Log: where the library's messages and progress lines go                  */
/* ------------------------------------------------------------------------ */

/* What the library prints (warnings, progress bars, the loaders' notes,
 * the trainers' status lines, the evaluations' progress) goes through one
 * function, stderr by default.
 * A host program installs its own with da_set_log (a GUI, a server's log,
 * a test that captures them). msg is one line without its newline; it is
 * valid only during the call. DA_LOG_DEBUG is dropped by the default
 * function (which weights loaded, from where): a callback sees it. */
typedef enum da_log_level {
    DA_LOG_ERROR = 0,      /* just before an abort (out of memory in a forward pass) */
    DA_LOG_WARN = 1,       /* something was ignored (a bad DA_GEMM) */
    DA_LOG_INFO = 2,       /* what a long run is doing */
    DA_LOG_PROGRESS = 3,   /* a progress line (da_progress on fd 2) */
    DA_LOG_DEBUG = 4       /* details; not printed by default */
} da_log_level;
typedef void (*da_log_fn)(da_log_level level, const char *msg, void *user);
/* fn NULL restores the default (stderr). Set it before starting work: it is
 * read, not locked, by every thread. */
DA_API void da_set_log(da_log_fn fn, void *user);
/* printf-style; the text is cut at 4 KB and a trailing newline dropped */
DA_API void da_log(da_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* "DEBUG", "INFO", ... */
DA_API const char *da_log_level_name(da_log_level level);

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

/* Number of threads for OpenMP loops and OpenBLAS. n <= 0 means "all cores".
 * da_threads_init() reads DA_THREADS from the environment (call once at start).
 * Results never depend on the thread count: kernels split work over
 * independent outputs only and keep every reduction in a fixed order. */
DA_API void da_set_threads(int n);
DA_API int da_get_threads(void);
/* Reads DA_THREADS, DA_GEMM (see da_gemm_set_backend), DA_GEMM_TILE (see
 * da_gemm_set_tile) and DA_ISA (see da_set_isa) from the environment.
 * DA_THREADS must be a count in [1, 4096]; anything else (0, -1, "two")
 * is ignored with a DA_LOG_WARN and all cores are used. */
DA_API void da_threads_init(void);

/* The vector kernels (elementary functions, activations, normalisations)
 * are built once per instruction set: "base" (the target's baseline:
 * SSE2 on x86-64, NEON on aarch64) and on x86-64 also "avx2" and
 * "avx512". The widest the CPU supports runs unless DA_ISA (read by
 * da_threads_init) or da_set_isa says otherwise ("best" = that default).
 * Every copy gives the same bits: the choice changes speed only. */
DA_API const char *da_isa(void);
DA_API da_status da_set_isa(const char *name);   /* refused: unknown, or not supported here */

/* Coarse threading: one parallel region for a whole model call. The n items
 * (the images of a batch) are cut into min(threads, n) contiguous pieces,
 * and piece w runs fn(ctx, w, i0, count) on its own thread, every kernel
 * inside it single-threaded (a parallel region inside another runs on one
 * thread). Only for work whose bits do not depend on how a batch is cut
 * (every dalign model: an image's bits never depend on its batch). With
 * one piece, or when already inside a parallel region, fn runs once on the
 * calling thread over all items, and the kernels thread themselves.
 * Returns the first failure in piece order, its message on this thread. */
typedef da_status (*da_piece_fn)(void *ctx, int worker, int i0, int count);
DA_API int da_pieces(int n_items);   /* how many pieces da_run_pieces will cut n_items into */
DA_API da_status da_run_pieces(int n_items, da_piece_fn fn, void *ctx);

/* ------------------------------------------------------------------------ */
/* Elementary functions with the same bits on every machine.                */
/* glibc's erff, tanhf, log1pf (and, on x86-64, the FMA variants of expf    */
/* and logf) round differently on different CPUs and architectures. These  */
/* are written from + - * / in double (no libm, no FMA: -ffp-contract=off)  */
/* and round once to float, so x86-64 and aarch64 agree bit for bit.        */
/* ------------------------------------------------------------------------ */

DA_API float da_expf(float x);
DA_API float da_logf(float x);   /* x > 0; log(0) = -inf, log(x < 0) = NaN */
DA_API float da_erff(float x);
DA_API float da_tanhf(float x);
DA_API float da_log1pf(float x); /* x > -1 */

/* Array versions: out[i] = da_expf(in[i]) etc. for i < n, the same bits as
 * the scalar functions for every input and on every machine, vectorised
 * (src/core/vec_math.c). out may be in; one thread. */
DA_API void da_expf_n(float *out, const float *in, size_t n);
DA_API void da_logf_n(float *out, const float *in, size_t n);
DA_API void da_erff_n(float *out, const float *in, size_t n);
DA_API void da_tanhf_n(float *out, const float *in, size_t n);
DA_API void da_log1pf_n(float *out, const float *in, size_t n);

/* ------------------------------------------------------------------------ */
/* Arena: bump allocator, reset per step so training loops never malloc.    */
/* ------------------------------------------------------------------------ */

typedef struct da_arena_block da_arena_block;
typedef struct da_arena {
    da_arena_block *head;     /* blocks are kept across resets and reused */
    da_arena_block *current;
    size_t block_bytes;       /* size of a new block (grows to fit big requests) */
    size_t used_bytes;        /* bytes handed out since the last reset */
    size_t peak_bytes;        /* high-water mark over the arena's life */
} da_arena;

DA_API void da_arena_init(da_arena *a, size_t block_bytes);
DA_API void *da_arena_alloc(da_arena *a, size_t bytes);  /* 64-byte aligned, NOT zeroed */
DA_API void *da_arena_calloc(da_arena *a, size_t bytes); /* 64-byte aligned, zeroed */
DA_API void da_arena_reset(da_arena *a);                 /* forget all allocations, keep memory */
DA_API void da_arena_free(da_arena *a);
/* A position in the arena: da_arena_release gives back everything allocated
 * after it (the memory stays the arena's, for the next allocations). */
typedef struct da_arena_mark {
    da_arena_block *block;    /* the current block at the mark, NULL: none yet */
    size_t used;              /* its fill at the mark */
    size_t used_bytes;        /* the arena's used_bytes at the mark */
} da_arena_mark;
DA_API da_arena_mark da_arena_get_mark(const da_arena *a);
DA_API void da_arena_release(da_arena *a, da_arena_mark m);

/* ------------------------------------------------------------------------ */
/* Tensors and the autograd tape                                            */
/* ------------------------------------------------------------------------ */

#define DA_MAX_DIMS 6

typedef struct da_tensor {
    float *data;
    float *grad;                /* same size as data, or NULL: no gradient flows here */
    int ndim;
    int shape[DA_MAX_DIMS];
    size_t size;                /* product of shape (1 for a scalar, ndim == 0) */
} da_tensor;

typedef struct da_node da_node;
typedef void (*da_backward_fn)(const da_node *node);

/* One recorded op. Backward reads out->grad and accumulates into in[i]->grad. */
struct da_node {
    da_backward_fn backward;
    da_tensor *out;
    da_tensor *in[4];
    int i[8];          /* integer arguments (sizes, strides, flags) */
    float f[4];        /* float arguments (eps, scale) */
    void *saved;       /* forward results the backward needs (arena memory) */
    void *saved2;
};

typedef struct da_tape {
    da_arena arena;     /* every tensor made by an op lives here until reset */
    da_node *nodes;
    int n_nodes, cap_nodes;
    int grad_enabled;   /* 0: inference, nothing recorded, no grads allocated */
} da_tape;

DA_API void da_tape_init(da_tape *t, size_t arena_block_bytes);
DA_API void da_tape_free(da_tape *t);
DA_API void da_tape_reset(da_tape *t);              /* drop nodes and tensors, keep memory */
DA_API void da_tape_set_grad(da_tape *t, int enabled);
/* Inference scopes. A block of a forward (a ResBlock, a transformer layer)
 * makes a dozen intermediates and returns one tensor; when nothing between
 * begin and end was recorded for backward (gradients off, or frozen weights
 * on inputs without gradients), nothing will read those intermediates again,
 * so da_tape_scope_end gives their memory back and returns `keep` moved down
 * to the scope's start: a forward then needs its live tensors plus one
 * block's intermediates, not every activation (`dalign sample --n 16`: peak
 * RSS 130 -> 69 MB). When something was recorded it returns `keep`
 * unchanged and frees nothing. The values never change, only where they
 * live. */
typedef struct da_tape_scope {
    da_arena_mark mark;
    int n_nodes;
} da_tape_scope;
DA_API da_tape_scope da_tape_scope_begin(const da_tape *t);
DA_API da_tensor *da_tape_scope_end(da_tape *t, da_tape_scope s, da_tensor *keep);
/* Seed d(loss)/d(loss) = 1 and run every recorded backward in reverse order.
 * `loss` must have size 1 and a gradient buffer. */
DA_API void da_tape_backward(da_tape *t, da_tensor *loss);
/* Same with an arbitrary upstream gradient: out->grad += dout, then replay.
 * (Tests use it to match PyTorch's y.backward(dout).) */
DA_API void da_tape_backward_from(da_tape *t, da_tensor *out, const float *dout);

/* A tensor wrapping caller memory (a model parameter, an input batch).
 * grad may be NULL (frozen / constant). */
DA_API da_tensor *da_leaf(da_tape *t, float *data, float *grad, int ndim, const int *shape);
/* A fresh arena tensor (data uninitialised). It gets a zeroed grad buffer
 * when `with_grad` and the tape records gradients. */
DA_API da_tensor *da_tensor_new(da_tape *t, int ndim, const int *shape, int with_grad);
/* Output tensor for an op whose inputs are in[0..n_in): it gets a grad buffer
 * iff the tape records and some input has one. Used by op wrappers. */
DA_API da_tensor *da_tensor_for_op(da_tape *t, int ndim, const int *shape, da_tensor *const *in, int n_in);
/* Record a node (no-op when gradients are disabled). */
DA_API void da_tape_push(da_tape *t, const da_node *node);
DA_API size_t da_shape_size(int ndim, const int *shape);

/* ------------------------------------------------------------------------ */
/* GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major.                   */
/* op(A) is M x K, op(B) is K x N; trans_a/trans_b say A/B are stored       */
/* transposed. Cut into pieces whose shape depends on the problem only,    */
/* each single-threaded: the bits never depend on the thread count.        */
/* ------------------------------------------------------------------------ */

DA_API void da_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc);
/* `items` independent GEMMs of one shape: item i reads A + i*stride_a,
 * B + i*stride_b and writes C + i*stride_c (a stride of 0 shares the matrix,
 * e.g. a weight). An item's bits never depend on the other items: use it
 * for the images of a batch, so an image comes out the same alone or in
 * any batch, at any position. */
DA_API void da_gemm_items(int items, size_t stride_a, size_t stride_b, size_t stride_c,
                          int trans_a, int trans_b, int M, int N, int K, float alpha,
                          const float *A, int lda, const float *B, int ldb,
                          float beta, float *C, int ldc);
/* The portable blocked kernel, always compiled (tested against OpenBLAS). */
DA_API void da_gemm_portable(int trans_a, int trans_b, int M, int N, int K, float alpha,
                             const float *A, int lda, const float *B, int ldb,
                             float beta, float *C, int ldc);
/* The backend in use: "portable" or "openblas". Chosen at run time:
 * "portable" (the default; DA_GEMM=portable, `dalign --gemm portable`)
 * gives bits that are the same on every machine and architecture;
 * "openblas" (da_gemm_set_backend("openblas"), builds with OpenBLAS)
 * matches them within rounding and may be faster on CPUs whose FMA units
 * also do the multiplies and adds (Intel). DA_ERR_INVALID for an unknown
 * name or "openblas" in a build without it. */
DA_API const char *da_gemm_backend(void);
DA_API da_status da_gemm_set_backend(const char *name);
/* The portable GEMM's register tile, e.g. "ymm 8x16": "xmm 8x16" (SSE2,
 * NEON), "ymm 4x24" (AVX2), on AVX-512 "zmm 8x32" where it ran clearly
 * faster than "ymm 8x16" when timed once per process (a zmm operation is
 * two 256-bit halves on some cores, Zen 4). da_gemm_set_tile("xmm" | "ymm"
 * | "zmm") chooses the register width (DA_GEMM_TILE, read by
 * da_threads_init; a width the instruction set in use, da_isa, cannot run
 * gives the widest it can), "auto" restores the timed choice. Every tile
 * gives the same bits: speed only. */
DA_API const char *da_gemm_tile(void);
DA_API da_status da_gemm_set_tile(const char *name);

/* ------------------------------------------------------------------------ */
/* Kernel pairs (raw float*) and their tape wrappers (da_tensor*).          */
/* Shapes in PyTorch order. Every wrapper returns its output tensor.        */
/* ------------------------------------------------------------------------ */

/* linear: out (B, T, OC) = inp (B, T, C) @ weight (OC, C)^T + bias (OC);
 * bias may be NULL. Each of the B images is its own GEMM item (batch
 * invariance); backward sums dweight and dbias over all B*T rows. */
DA_API void da_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int B, int T, int C, int OC);
DA_API void da_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int B, int T, int C, int OC);
/* x (B, ..., C), w (OC, C), b (OC) or NULL -> (B, ..., OC); dim 0 is the batch */
DA_API da_tensor *da_linear(da_tape *t, da_tensor *x, da_tensor *w, da_tensor *b);

/* batched matmul: out (B, M, N) = a (B, M, K) @ b (B, K, N) */
DA_API void da_matmul_forward(float *out, const float *a, const float *b, int B, int M, int K, int N);
DA_API void da_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                               int B, int M, int K, int N);
/* a (..., M, K) @ b (..., K, N) with equal leading dims -> (..., M, N); 2-D is B = 1 */
DA_API da_tensor *da_matmul(da_tape *t, da_tensor *a, da_tensor *b);

/* conv2d: out (N, O, OH, OW) = inp (N, C, H, W) * weight (O, C, k, k) + bias (O);
 * OH = (H + 2*pad - k)/stride + 1. bias may be NULL. Runs as im2col + one GEMM
 * per group of images (group size fixed by the shapes, never by threads); col
 * is caller scratch of da_conv2d_col_size() floats (same arguments as the
 * kernels): at most the larger of one image's C*k*k*OH*OW and 1 MiB, and 0
 * (col may be NULL) for k = 1, stride = 1, pad = 0. The tape wrapper takes
 * col from the tape's arena. */
DA_API size_t da_conv2d_col_size(int N, int C, int H, int W, int O, int k, int stride, int pad);
DA_API void da_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                              float *col, int N, int C, int H, int W, int O, int k, int stride, int pad);
DA_API void da_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, float *col,
                               int N, int C, int H, int W, int O, int k, int stride, int pad);
DA_API da_tensor *da_conv2d(da_tape *t, da_tensor *x, da_tensor *w, da_tensor *b, int stride, int pad);

/* nearest upsample x2: (N, C, H, W) -> (N, C, 2H, 2W) */
DA_API void da_upsample2x_forward(float *out, const float *inp, int N, int C, int H, int W);
DA_API void da_upsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W);
DA_API da_tensor *da_upsample2x(da_tape *t, da_tensor *x);

/* 2x2 average-pool downsample: (N, C, H, W) -> (N, C, H/2, W/2). H and W must
 * be even: model code guarantees it, so kernel and wrapper assert() it. */
DA_API void da_downsample2x_forward(float *out, const float *inp, int N, int C, int H, int W);
DA_API void da_downsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W);
DA_API da_tensor *da_downsample2x(da_tape *t, da_tensor *x);

/* groupnorm over (N, C, S) with S = H*W; gamma/beta (C). mean/rstd (N, G) are
 * saved by forward for backward. */
DA_API void da_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *gamma, const float *beta, int N, int C, int S, int G, float eps);
DA_API void da_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                  const float *inp, const float *gamma, const float *mean, const float *rstd,
                                  int N, int C, int S, int G);
/* x (N, C, ...) */
DA_API da_tensor *da_groupnorm(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta, int groups,
                               float eps);
/* silu(groupnorm(x)) fused, bit for bit da_silu(da_groupnorm(...)) forward
 * and backward. The kernel writes normed (the groupnorm output, which the
 * backward needs) unless it is NULL. */
DA_API void da_groupnorm_silu_forward(float *out, float *normed, float *mean, float *rstd, const float *inp,
                                      const float *gamma, const float *beta, int N, int C, int S, int G,
                                      float eps);
DA_API da_tensor *da_groupnorm_silu(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta, int groups,
                                    float eps);

/* layernorm over the last dim: inp (N, C); mean/rstd (N) */
DA_API void da_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *gamma, const float *beta, int N, int C, float eps);
DA_API void da_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                  const float *inp, const float *gamma, const float *mean, const float *rstd,
                                  int N, int C);
DA_API da_tensor *da_layernorm(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta, float eps);

/* elementwise activations over n values */
DA_API void da_silu_forward(float *out, const float *inp, size_t n);
DA_API void da_silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
DA_API da_tensor *da_silu(da_tape *t, da_tensor *x);
DA_API void da_gelu_forward(float *out, const float *inp, size_t n);        /* exact: x * Phi(x) */
DA_API void da_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
DA_API da_tensor *da_gelu(da_tape *t, da_tensor *x);
DA_API void da_gelu_tanh_forward(float *out, const float *inp, size_t n);   /* tanh approximation */
DA_API void da_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n);
DA_API da_tensor *da_gelu_tanh(da_tape *t, da_tensor *x);
DA_API void da_log_sigmoid_forward(float *out, const float *inp, size_t n); /* log(1/(1+e^-x)), stable */
DA_API void da_log_sigmoid_backward(float *dinp, const float *dout, const float *inp, size_t n);
DA_API da_tensor *da_log_sigmoid(da_tape *t, da_tensor *x);

/* softmax / log-softmax over the last dim: (N, C) */
DA_API void da_softmax_forward(float *out, const float *inp, int N, int C);
DA_API void da_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C);
DA_API da_tensor *da_softmax(da_tape *t, da_tensor *x);
DA_API void da_log_softmax_forward(float *out, const float *inp, int N, int C);
DA_API void da_log_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C);
DA_API da_tensor *da_log_softmax(da_tape *t, da_tensor *x);

/* multi-head scaled dot-product attention (no projections; compose with da_linear).
 * q (B, Tq, D), k and v (B, Tk, D), D = n_heads * head_dim -> out (B, Tq, D).
 * causal: query i sees keys j <= i (requires Tq == Tk).
 * key_keep (B, Tk) or NULL: 0 masks a key out (padding). A query row with no
 * visible key yields zeros. att (B, H, Tq, Tk) holds the softmax probabilities
 * for backward. */
DA_API void da_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                                 const uint8_t *key_keep, int B, int Tq, int Tk, int D, int n_heads, int causal);
/* ds is caller scratch of Tq * Tk floats (reused across heads; may be NULL
 * when dq and dk are both NULL). */
DA_API void da_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                                  const float *q, const float *k, const float *v, float *ds,
                                  int B, int Tq, int Tk, int D, int n_heads);
DA_API da_tensor *da_attention(da_tape *t, da_tensor *q, da_tensor *k, da_tensor *v, int n_heads,
                               int causal, const uint8_t *key_keep);

/* embedding: out (n, D) = table[ids[i]]; ids in [0, V) */
DA_API void da_embedding_forward(float *out, const float *table, const int *ids, int n, int D);
DA_API void da_embedding_backward(float *dtable, const float *dout, const int *ids, int n, int D, int V);
/* ids (B, T) -> (B, T, D) */
DA_API da_tensor *da_embedding(da_tape *t, da_tensor *table, const int *ids, int B, int T);

/* elementwise with broadcasting of b to a's shape (numpy rules, b->ndim <= a->ndim) */
DA_API da_tensor *da_add(da_tape *t, da_tensor *a, da_tensor *b);
DA_API da_tensor *da_sub(da_tape *t, da_tensor *a, da_tensor *b);
DA_API da_tensor *da_mul(da_tape *t, da_tensor *a, da_tensor *b);
DA_API da_tensor *da_scale(da_tape *t, da_tensor *x, float s);           /* s * x */
DA_API da_tensor *da_add_scalar(da_tape *t, da_tensor *x, float s);      /* x + s */

/* shape ops (a negative dim counts from the end; one entry of reshape's shape
 * may be -1, inferred from the size) */
DA_API da_tensor *da_reshape(da_tape *t, da_tensor *x, int ndim,
                             const int *shape); /* view: shares data and grad */
DA_API da_tensor *da_permute(da_tape *t, da_tensor *x, const int *perm);            /* copy in the new order */
DA_API da_tensor *da_concat(da_tape *t, da_tensor *a, da_tensor *b, int dim);
/* narrow: x.narrow(dim, start, len), a copy; split = several narrows */
DA_API da_tensor *da_narrow(da_tape *t, da_tensor *x, int dim, int start, int len);

/* reductions over the trailing dims: keep the first `keep` dims.
 * keep = 0 -> a scalar; keep = 1 on (N, C, H, W) -> (N). */
DA_API da_tensor *da_sum(da_tape *t, da_tensor *x, int keep);
/* index of the first NaN or infinity of x (n), or (size_t)-1 when all are
 * finite: the check behind "nothing silently wrong" (weights, latents) */
DA_API size_t da_first_nonfinite(const float *x, size_t n);
DA_API da_tensor *da_mean(da_tape *t, da_tensor *x, int keep);

/* losses, each a scalar mean */
DA_API da_tensor *da_mse(da_tape *t, da_tensor *a, da_tensor *b);        /* mean (a - b)^2 */
/* logits (N, C), targets[N] in [0, C) or ignore_index (skipped, excluded from the mean) */
DA_API da_tensor *da_cross_entropy(da_tape *t, da_tensor *logits, const int *targets, int ignore_index);

/* ------------------------------------------------------------------------ */
/* Optimisation                                                             */
/* ------------------------------------------------------------------------ */

typedef struct da_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} da_adamw;

/* One AdamW step on a flat parameter buffer, exactly as torch.optim.AdamW:
 * p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps). step counts from 1. */
DA_API void da_adamw_step(float *params, const float *grads, float *m, float *v, size_t n,
                          long step, const da_adamw *cfg);
/* Global L2 norm of grads (fixed reduction order, in double). */
DA_API double da_grad_norm(const float *grads, size_t n);
/* Scale grads so their global norm is at most max_norm (torch's
 * clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when < 1).
 * Returns the norm before clipping. */
DA_API double da_grad_clip(float *grads, size_t n, float max_norm);
/* ema = decay * ema + (1 - decay) * params */
DA_API void da_ema_update(float *ema, const float *params, size_t n, float decay);

typedef enum { DA_LR_CONSTANT = 0, DA_LR_COSINE = 1 } da_lr_kind;
/* Linear warmup over `warmup` steps, then constant or cosine decay to
 * min_lr at total_steps. step counts from 0:
 *   step < warmup: base_lr * (step + 1) / warmup   (base_lr at step warmup-1)
 *   cosine:        min_lr + 0.5 (base_lr - min_lr) (1 + cos(pi * progress)),
 *                  progress = (step - warmup) / (total_steps - warmup) in [0, 1]
 *                  (1 when total_steps <= warmup). */
DA_API float da_lr_at(da_lr_kind kind, float base_lr, float min_lr, long step, long warmup, long total_steps);

/* ------------------------------------------------------------------------ */
/* Random numbers: explicit generators, bit-compatible with PyTorch's CPU   */
/* generator (mt19937 + PyTorch's transforms).                              */
/* ------------------------------------------------------------------------ */

typedef struct da_rng {
    uint32_t mt[624];
    int index;
    int has_next_normal;     /* PyTorch caches the second Box-Muller double */
    double next_normal;
} da_rng;

DA_API void da_rng_seed(da_rng *r, uint64_t seed);     /* torch.manual_seed(seed) */
DA_API uint32_t da_rng_u32(da_rng *r);                   /* one mt19937 draw */
DA_API uint64_t da_rng_u64(da_rng *r);                   /* PyTorch random64(): two draws */
/* torch.randn(n) into out; identical bits to torch.manual_seed(s); torch.randn(n) */
DA_API void da_randn(da_rng *r, float *out, size_t n);
/* torch.rand(n): uniform [0, 1) floats */
DA_API void da_rand(da_rng *r, float *out, size_t n);
/* torch.randint(low, high, (n,)); DA_ERR_INVALID unless low < high */
DA_API da_status da_randint(da_rng *r, int64_t *out, size_t n, int64_t low, int64_t high);
/* torch.randperm(n) for n < 2^24 would need more state; not provided. */
/* The whole state as text, exact and readable from Python (checkpoint
 * metadata): "index has_normal normal_bits mt[0] .. mt[623]", the integers
 * in lowercase hex of fixed width, the cached normal as the 16 hex digits of
 * its double bits. buf holds DA_RNG_TEXT bytes (NUL included). from_text is
 * its strict inverse: 0 ok, -1 (r unchanged) for NULL or any other text. */
#define DA_RNG_TEXT (3 + 1 + 1 + 1 + 16 + 624 * 9 + 1)
DA_API void da_rng_to_text(const da_rng *r, char buf[DA_RNG_TEXT]);
DA_API int da_rng_from_text(da_rng *r, const char *s);

/* ------------------------------------------------------------------------ */
/* safetensors                                                              */
/* ------------------------------------------------------------------------ */

typedef enum { DA_F32 = 0, DA_F16 = 1, DA_BF16 = 2 } da_dtype;

typedef struct da_st_tensor {
    char *name;
    da_dtype dtype;
    int ndim;
    int64_t shape[DA_MAX_DIMS];
    size_t numel;
    size_t offset;       /* byte offset in the data section */
    size_t nbytes;
} da_st_tensor;

typedef struct da_st_meta {
    char *key;
    char *value;
} da_st_meta;

typedef struct da_safetensors {
    uint8_t *data;       /* the data section (whole file is read into memory) */
    size_t data_bytes;
    da_st_tensor *tensors;
    int n_tensors;       /* in the order of their byte offsets */
    da_st_meta *meta;
    int n_meta;
    void *file_buffer;
} da_safetensors;

/* Read and strictly validate a file. On failure *out is NULL and the
 * status + da_last_error() say why. */
DA_API da_status da_st_open(const char *path, da_safetensors **out);
/* Same, from a memory buffer (copied). */
DA_API da_status da_st_parse(const void *bytes, size_t n, da_safetensors **out);
DA_API void da_st_close(da_safetensors *st);
DA_API const da_st_tensor *da_st_find(const da_safetensors *st, const char *name);
DA_API const char *da_st_meta_get(const da_safetensors *st, const char *key);
/* Convert a tensor to f32 into dst (numel floats). */
DA_API void da_st_to_f32(const da_safetensors *st, const da_st_tensor *t, float *dst);
/* Find `name`, check its shape equals (ndim, shape) and convert into dst. */
DA_API da_status da_st_read(const da_safetensors *st, const char *name, float *dst,
                            int ndim, const int *shape);

typedef struct da_st_entry {
    const char *name;
    const float *data;
    int ndim;
    int shape[DA_MAX_DIMS];
} da_st_entry;

/* Write F32 tensors (and optional string metadata) atomically: temp file,
 * fsync, rename. meta may be NULL when n_meta == 0. Tensors and metadata are
 * written sorted by name (byte order), whatever order they are given in. */
DA_API da_status da_st_write(const char *path, const da_st_entry *entries, int n,
                             const da_st_meta *meta, int n_meta);

/* ------------------------------------------------------------------------ */
/* Progress bar and JSONL metrics log (src/core/progress.c): the training   */
/* harness (dalign/train.h) draws and logs through them.                    */
/* ------------------------------------------------------------------------ */

/* Progress bar (src/core/progress.c), drawn on a file descriptor (2 for
 * stderr; with a log function installed by da_set_log, fd 2 means the log:
 * each line goes to it as DA_LOG_PROGRESS, drawn as on a non-terminal).
 * On a terminal: one line redrawn with '\r' at most every
 * min_interval (0.1 s): "label  step/total  loss L  R it/s  ETA mm:ss"; the
 * loss shown is an EMA (weight 0.9, bias-corrected). Not a terminal (a log
 * file, CI): quiet except one plain line every plain_every steps.
 * da_progress_finish draws the final state and ends the line. */
typedef struct da_progress {
    int fd;                  /* < 0: draw nothing */
    int tty;                 /* isatty(fd), decided at init (tests may set it) */
    const char *label;
    long start, total, step; /* start > 0 after a resume: it/s counts this session */
    long plain_every;        /* non-TTY line period; init's 0 means total/10 */
    long drawn_step;
    double loss_num, loss_den;
    double t_start, t_last_draw, min_interval;
    int finished;
} da_progress;

DA_API void da_progress_init(da_progress *p, int fd, const char *label, long start, long total,
                             long plain_every);
DA_API void da_progress_update(da_progress *p, long step, float loss);  /* step = steps done */
DA_API void da_progress_finish(da_progress *p);

/* JSONL metrics log (src/core/progress.c): one JSON object per line,
 * {"step":N,"name":value,...}, written with one write() and no user-space
 * buffer, so a killed run keeps every line it logged. Non-finite values are
 * written as null. fmt NULL means "%.9g" (round-trips a float). */
typedef struct da_metric {
    const char *name;        /* letters, digits, '_', '.', '-'; at most 31 chars */
    double value;
    const char *fmt;
} da_metric;
typedef struct da_metrics_log { int fd; } da_metrics_log;

DA_API int da_metric_name_ok(const char *name);
/* resume_step < 0: start a new log (truncate). resume_step >= 0: keep the
 * complete lines whose "step" <= resume_step (rewritten atomically), drop
 * the rest, then append. */
DA_API da_status da_metrics_open(da_metrics_log *m, const char *path, long resume_step);
DA_API da_status da_metrics_write(da_metrics_log *m, long step, const da_metric *fields, int n);
DA_API da_status da_metrics_sync(da_metrics_log *m);  /* fsync: called at each checkpoint */
DA_API void da_metrics_close(da_metrics_log *m);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_CORE_H */
