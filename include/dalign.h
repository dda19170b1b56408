/* dalign.h: the public C API of dalign, a pure-C reference implementation of
 * diffusion-model alignment. One header, prefix da_ for functions and types,
 * DA_ for macros. Sections follow the layers of src/: core first.
 *
 * Conventions (docs/architecture.md has the long form):
 *  - tensors are f32, contiguous, row-major, PyTorch dimension order;
 *  - kernel pairs: outputs first, then inputs, then sizes; backward kernels
 *    ACCUMULATE into gradient buffers (+=), so a NULL gradient pointer means
 *    "no gradient wanted here" and is skipped;
 *  - functions that can fail on user input return a da_status and set a
 *    message readable with da_last_error(); they never abort.
 */
#ifndef DALIGN_H
#define DALIGN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DA_VERSION "0.1.0"

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

const char *da_strerror(da_status status);   /* generic text for a code */
const char *da_last_error(void);             /* message of the last failure on this thread */
/* Record a failure message (printf-style) and return `status`, so callers can
 * write `return da_fail(DA_ERR_FORMAT, "bad dtype %s", d);` */
da_status da_fail(da_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

/* Number of threads for OpenMP loops and OpenBLAS. n <= 0 means "all cores".
 * da_threads_init() reads DA_THREADS from the environment (call once at start).
 * Results never depend on the thread count: kernels split work over
 * independent outputs only and keep every reduction in a fixed order. */
void da_set_threads(int n);
int da_get_threads(void);
/* Reads DA_THREADS and DA_GEMM (see da_gemm_set_backend) from the environment. */
void da_threads_init(void);

/* ------------------------------------------------------------------------ */
/* Elementary functions with the same bits on every machine.                */
/* glibc's erff, tanhf, log1pf (and, on x86-64, the FMA variants of expf    */
/* and logf) round differently on different CPUs and architectures. These  */
/* are written from + - * / in double (no libm, no FMA: -ffp-contract=off)  */
/* and round once to float, so x86-64 and aarch64 agree bit for bit.        */
/* ------------------------------------------------------------------------ */

float da_expf(float x);
float da_logf(float x);   /* x > 0; log(0) = -inf, log(x < 0) = NaN */
float da_erff(float x);
float da_tanhf(float x);
float da_log1pf(float x); /* x > -1 */

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

void da_arena_init(da_arena *a, size_t block_bytes);
void *da_arena_alloc(da_arena *a, size_t bytes);  /* 64-byte aligned, NOT zeroed */
void *da_arena_calloc(da_arena *a, size_t bytes); /* 64-byte aligned, zeroed */
void da_arena_reset(da_arena *a);                 /* forget all allocations, keep memory */
void da_arena_free(da_arena *a);

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

void da_tape_init(da_tape *t, size_t arena_block_bytes);
void da_tape_free(da_tape *t);
void da_tape_reset(da_tape *t);              /* drop nodes and tensors, keep memory */
void da_tape_set_grad(da_tape *t, int enabled);
/* Seed d(loss)/d(loss) = 1 and run every recorded backward in reverse order.
 * `loss` must have size 1 and a gradient buffer. */
void da_tape_backward(da_tape *t, da_tensor *loss);
/* Same with an arbitrary upstream gradient: out->grad += dout, then replay.
 * (Tests use it to match PyTorch's y.backward(dout).) */
void da_tape_backward_from(da_tape *t, da_tensor *out, const float *dout);

/* A tensor wrapping caller memory (a model parameter, an input batch).
 * grad may be NULL (frozen / constant). */
da_tensor *da_leaf(da_tape *t, float *data, float *grad, int ndim, const int *shape);
/* A fresh arena tensor (data uninitialised). It gets a zeroed grad buffer
 * when `with_grad` and the tape records gradients. */
da_tensor *da_tensor_new(da_tape *t, int ndim, const int *shape, int with_grad);
/* Output tensor for an op whose inputs are in[0..n_in): it gets a grad buffer
 * iff the tape records and some input has one. Used by op wrappers. */
da_tensor *da_tensor_for_op(da_tape *t, int ndim, const int *shape, da_tensor *const *in, int n_in);
/* Record a node (no-op when gradients are disabled). */
void da_tape_push(da_tape *t, const da_node *node);
size_t da_shape_size(int ndim, const int *shape);

/* ------------------------------------------------------------------------ */
/* GEMM: C = alpha * op(A) @ op(B) + beta * C, row-major.                   */
/* op(A) is M x K, op(B) is K x N; trans_a/trans_b say A/B are stored       */
/* transposed. Cut into pieces whose shape depends on the problem only,    */
/* each single-threaded: the bits never depend on the thread count.        */
/* ------------------------------------------------------------------------ */

void da_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);
/* `items` independent GEMMs of one shape: item i reads A + i*stride_a,
 * B + i*stride_b and writes C + i*stride_c (a stride of 0 shares the matrix,
 * e.g. a weight). An item's bits never depend on the other items: use it
 * for the images of a batch, so an image comes out the same alone or in
 * any batch, at any position. */
void da_gemm_items(int items, size_t stride_a, size_t stride_b, size_t stride_c,
                   int trans_a, int trans_b, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc);
/* The portable blocked kernel, always compiled (tested against OpenBLAS). */
void da_gemm_portable(int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc);
/* The backend in use: "openblas" or "portable". Chosen at run time:
 * da_gemm_set_backend("portable") (or DA_GEMM=portable, or `dalign --gemm
 * portable`) gives bits that are the same on every machine and
 * architecture; "openblas" (the default when built with it) is faster and
 * matches them within rounding. DA_ERR_INVALID for an unknown name or
 * "openblas" in a build without it. */
const char *da_gemm_backend(void);
da_status da_gemm_set_backend(const char *name);

/* ------------------------------------------------------------------------ */
/* Kernel pairs (raw float*) and their tape wrappers (da_tensor*).          */
/* Shapes in PyTorch order. Every wrapper returns its output tensor.        */
/* ------------------------------------------------------------------------ */

/* linear: out (B, T, OC) = inp (B, T, C) @ weight (OC, C)^T + bias (OC);
 * bias may be NULL. Each of the B images is its own GEMM item (batch
 * invariance); backward sums dweight and dbias over all B*T rows. */
void da_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int B, int T, int C, int OC);
void da_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int B, int T, int C, int OC);
/* x (B, ..., C), w (OC, C), b (OC) or NULL -> (B, ..., OC); dim 0 is the batch */
da_tensor *da_linear(da_tape *t, da_tensor *x, da_tensor *w, da_tensor *b);

/* batched matmul: out (B, M, N) = a (B, M, K) @ b (B, K, N) */
void da_matmul_forward(float *out, const float *a, const float *b, int B, int M, int K, int N);
void da_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                        int B, int M, int K, int N);
/* a (..., M, K) @ b (..., K, N) with equal leading dims -> (..., M, N); 2-D is B = 1 */
da_tensor *da_matmul(da_tape *t, da_tensor *a, da_tensor *b);

/* conv2d: out (N, O, OH, OW) = inp (N, C, H, W) * weight (O, C, k, k) + bias (O);
 * OH = (H + 2*pad - k)/stride + 1. bias may be NULL. Runs as im2col + one GEMM
 * per group of images (group size fixed by the shapes, never by threads); col
 * is caller scratch of da_conv2d_col_size() floats (same arguments as the
 * kernels): at most the larger of one image's C*k*k*OH*OW and 1 MiB, and 0
 * (col may be NULL) for k = 1, stride = 1, pad = 0. The tape wrapper takes
 * col from the tape's arena. */
size_t da_conv2d_col_size(int N, int C, int H, int W, int O, int k, int stride, int pad);
void da_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                       float *col, int N, int C, int H, int W, int O, int k, int stride, int pad);
void da_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, float *col,
                        int N, int C, int H, int W, int O, int k, int stride, int pad);
da_tensor *da_conv2d(da_tape *t, da_tensor *x, da_tensor *w, da_tensor *b, int stride, int pad);

/* nearest upsample x2: (N, C, H, W) -> (N, C, 2H, 2W) */
void da_upsample2x_forward(float *out, const float *inp, int N, int C, int H, int W);
void da_upsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W);
da_tensor *da_upsample2x(da_tape *t, da_tensor *x);

/* 2x2 average-pool downsample: (N, C, H, W) -> (N, C, H/2, W/2). H and W must
 * be even: model code guarantees it, so kernel and wrapper assert() it. */
void da_downsample2x_forward(float *out, const float *inp, int N, int C, int H, int W);
void da_downsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W);
da_tensor *da_downsample2x(da_tape *t, da_tensor *x);

/* groupnorm over (N, C, S) with S = H*W; gamma/beta (C). mean/rstd (N, G) are
 * saved by forward for backward. */
void da_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int N, int C, int S, int G, float eps);
void da_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean, const float *rstd,
                           int N, int C, int S, int G);
/* x (N, C, ...) */
da_tensor *da_groupnorm(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta, int groups, float eps);

/* layernorm over the last dim: inp (N, C); mean/rstd (N) */
void da_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int N, int C, float eps);
void da_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean, const float *rstd,
                           int N, int C);
da_tensor *da_layernorm(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta, float eps);

/* elementwise activations over n values */
void da_silu_forward(float *out, const float *inp, size_t n);
void da_silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
da_tensor *da_silu(da_tape *t, da_tensor *x);
void da_gelu_forward(float *out, const float *inp, size_t n);        /* exact: x * Phi(x) */
void da_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
da_tensor *da_gelu(da_tape *t, da_tensor *x);
void da_gelu_tanh_forward(float *out, const float *inp, size_t n);   /* tanh approximation */
void da_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n);
da_tensor *da_gelu_tanh(da_tape *t, da_tensor *x);
void da_log_sigmoid_forward(float *out, const float *inp, size_t n); /* log(1/(1+e^-x)), stable */
void da_log_sigmoid_backward(float *dinp, const float *dout, const float *inp, size_t n);
da_tensor *da_log_sigmoid(da_tape *t, da_tensor *x);

/* softmax / log-softmax over the last dim: (N, C) */
void da_softmax_forward(float *out, const float *inp, int N, int C);
void da_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C);
da_tensor *da_softmax(da_tape *t, da_tensor *x);
void da_log_softmax_forward(float *out, const float *inp, int N, int C);
void da_log_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C);
da_tensor *da_log_softmax(da_tape *t, da_tensor *x);

/* multi-head scaled dot-product attention (no projections; compose with da_linear).
 * q (B, Tq, D), k and v (B, Tk, D), D = n_heads * head_dim -> out (B, Tq, D).
 * causal: query i sees keys j <= i (requires Tq == Tk).
 * key_keep (B, Tk) or NULL: 0 masks a key out (padding). A query row with no
 * visible key yields zeros. att (B, H, Tq, Tk) holds the softmax probabilities
 * for backward. */
void da_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                          const uint8_t *key_keep, int B, int Tq, int Tk, int D, int n_heads, int causal);
/* ds is caller scratch of Tq * Tk floats (reused across heads; may be NULL
 * when dq and dk are both NULL). */
void da_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                           const float *q, const float *k, const float *v, float *ds,
                           int B, int Tq, int Tk, int D, int n_heads);
da_tensor *da_attention(da_tape *t, da_tensor *q, da_tensor *k, da_tensor *v, int n_heads,
                        int causal, const uint8_t *key_keep);

/* embedding: out (n, D) = table[ids[i]]; ids in [0, V) */
void da_embedding_forward(float *out, const float *table, const int *ids, int n, int D);
void da_embedding_backward(float *dtable, const float *dout, const int *ids, int n, int D, int V);
/* ids (B, T) -> (B, T, D) */
da_tensor *da_embedding(da_tape *t, da_tensor *table, const int *ids, int B, int T);

/* elementwise with broadcasting of b to a's shape (numpy rules, b->ndim <= a->ndim) */
da_tensor *da_add(da_tape *t, da_tensor *a, da_tensor *b);
da_tensor *da_sub(da_tape *t, da_tensor *a, da_tensor *b);
da_tensor *da_mul(da_tape *t, da_tensor *a, da_tensor *b);
da_tensor *da_scale(da_tape *t, da_tensor *x, float s);           /* s * x */
da_tensor *da_add_scalar(da_tape *t, da_tensor *x, float s);      /* x + s */

/* shape ops (a negative dim counts from the end; one entry of reshape's shape
 * may be -1, inferred from the size) */
da_tensor *da_reshape(da_tape *t, da_tensor *x, int ndim, const int *shape); /* view: shares data and grad */
da_tensor *da_permute(da_tape *t, da_tensor *x, const int *perm);            /* copy in the new order */
da_tensor *da_concat(da_tape *t, da_tensor *a, da_tensor *b, int dim);
/* narrow: x.narrow(dim, start, len), a copy; split = several narrows */
da_tensor *da_narrow(da_tape *t, da_tensor *x, int dim, int start, int len);

/* reductions over the trailing dims: keep the first `keep` dims.
 * keep = 0 -> a scalar; keep = 1 on (N, C, H, W) -> (N). */
da_tensor *da_sum(da_tape *t, da_tensor *x, int keep);
da_tensor *da_mean(da_tape *t, da_tensor *x, int keep);

/* losses, each a scalar mean */
da_tensor *da_mse(da_tape *t, da_tensor *a, da_tensor *b);        /* mean (a - b)^2 */
/* logits (N, C), targets[N] in [0, C) or ignore_index (skipped, excluded from the mean) */
da_tensor *da_cross_entropy(da_tape *t, da_tensor *logits, const int *targets, int ignore_index);

/* ------------------------------------------------------------------------ */
/* Optimisation                                                             */
/* ------------------------------------------------------------------------ */

typedef struct da_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} da_adamw;

/* One AdamW step on a flat parameter buffer, exactly as torch.optim.AdamW:
 * p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps). step counts from 1. */
void da_adamw_step(float *params, const float *grads, float *m, float *v, size_t n,
                   long step, const da_adamw *cfg);
/* Global L2 norm of grads (fixed reduction order, in double). */
double da_grad_norm(const float *grads, size_t n);
/* Scale grads so their global norm is at most max_norm (torch's
 * clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied when < 1).
 * Returns the norm before clipping. */
double da_grad_clip(float *grads, size_t n, float max_norm);
/* ema = decay * ema + (1 - decay) * params */
void da_ema_update(float *ema, const float *params, size_t n, float decay);

typedef enum { DA_LR_CONSTANT = 0, DA_LR_COSINE = 1 } da_lr_kind;
/* Linear warmup over `warmup` steps, then constant or cosine decay to
 * min_lr at total_steps. step counts from 0:
 *   step < warmup: base_lr * (step + 1) / warmup   (base_lr at step warmup-1)
 *   cosine:        min_lr + 0.5 (base_lr - min_lr) (1 + cos(pi * progress)),
 *                  progress = (step - warmup) / (total_steps - warmup) in [0, 1]
 *                  (1 when total_steps <= warmup). */
float da_lr_at(da_lr_kind kind, float base_lr, float min_lr, long step, long warmup, long total_steps);

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

void da_rng_seed(da_rng *r, uint64_t seed);     /* torch.manual_seed(seed) */
uint32_t da_rng_u32(da_rng *r);                   /* one mt19937 draw */
uint64_t da_rng_u64(da_rng *r);                   /* PyTorch random64(): two draws */
/* torch.randn(n) into out; identical bits to torch.manual_seed(s); torch.randn(n) */
void da_randn(da_rng *r, float *out, size_t n);
/* torch.rand(n): uniform [0, 1) floats */
void da_rand(da_rng *r, float *out, size_t n);
/* torch.randint(low, high, (n,)); DA_ERR_INVALID unless low < high */
da_status da_randint(da_rng *r, int64_t *out, size_t n, int64_t low, int64_t high);
/* torch.randperm(n) for n < 2^24 would need more state; not provided. */
/* The whole state as text, exact and readable from Python (checkpoint
 * metadata): "index has_normal normal_bits mt[0] .. mt[623]", the integers
 * in lowercase hex of fixed width, the cached normal as the 16 hex digits of
 * its double bits. buf holds DA_RNG_TEXT bytes (NUL included). from_text is
 * its strict inverse: 0 ok, -1 (r unchanged) for NULL or any other text. */
#define DA_RNG_TEXT (3 + 1 + 1 + 1 + 16 + 624 * 9 + 1)
void da_rng_to_text(const da_rng *r, char buf[DA_RNG_TEXT]);
int da_rng_from_text(da_rng *r, const char *s);

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
da_status da_st_open(const char *path, da_safetensors **out);
/* Same, from a memory buffer (copied). */
da_status da_st_parse(const void *bytes, size_t n, da_safetensors **out);
void da_st_close(da_safetensors *st);
const da_st_tensor *da_st_find(const da_safetensors *st, const char *name);
const char *da_st_meta_get(const da_safetensors *st, const char *key);
/* Convert a tensor to f32 into dst (numel floats). */
void da_st_to_f32(const da_safetensors *st, const da_st_tensor *t, float *dst);
/* Find `name`, check its shape equals (ndim, shape) and convert into dst. */
da_status da_st_read(const da_safetensors *st, const char *name, float *dst,
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
da_status da_st_write(const char *path, const da_st_entry *entries, int n,
                      const da_st_meta *meta, int n_meta);

/* ------------------------------------------------------------------------ */
/* Parameters: one buffer per model, described by a table of PyTorch names  */
/* ------------------------------------------------------------------------ */

/* A model's parameters: a table of (name, shape) entries built at create time
 * (names depend on the config: "down.1.res.0.conv1.weight"), then ONE data
 * buffer and ONE same-layout gradient buffer (plus AdamW's m and v and the
 * EMA when training), so optimiser, clipping, EMA and zeroing are flat loops
 * and the table drives loading, saving and test comparison. */
typedef struct da_params {
    int n, cap;
    char **names;
    int *ndim;
    int (*shape)[DA_MAX_DIMS];
    size_t *offset;        /* in floats, into data/grad */
    size_t total;          /* floats in all tensors */
    float *data;
    float *grad;           /* NULL: frozen (no gradients flow into this model) */
    void *index;           /* name -> entry hash (private) */
} da_params;

void da_params_init(da_params *p);
/* Add an entry; returns its index. Shapes are PyTorch's (Linear (out, in),
 * Conv2d (O, I, kh, kw)). Must be called before da_params_alloc. */
int da_params_add(da_params *p, const char *name, int ndim, const int *shape);
/* Allocate data (zeroed) and, when with_grad, the gradient buffer. */
da_status da_params_alloc(da_params *p, int with_grad);
int da_params_find(const da_params *p, const char *name);        /* index or -1 */
float *da_params_get(const da_params *p, const char *name);      /* data or NULL */
/* A tape leaf for the entry named by a printf-style name (data + grad when
 * the model is trainable). A missing name is a programming error: abort. */
da_tensor *da_params_leaf(da_tape *t, const da_params *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void da_params_zero_grad(da_params *p);
/* Save every entry as F32 (atomic); load requires every entry present with
 * the same shape and no unknown tensors, else an error naming the tensor. */
da_status da_params_save(const da_params *p, const char *path, const da_st_meta *meta, int n_meta);
da_status da_params_load(da_params *p, const char *path);
da_status da_params_load_st(da_params *p, const da_safetensors *st);
void da_params_free(da_params *p);

/* PyTorch's default inits, drawn from `rng` in table order:
 * Linear/Conv weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void da_init_uniform(da_rng *rng, float *x, size_t n, float bound);

/* ------------------------------------------------------------------------ */
/* VAE and UNet (src/models)                                                */
/* ------------------------------------------------------------------------ */

/* KL autoencoder, f = 4 (docs/models.md): x (B, 3, 32, 32) in [-1, 1] <->
 * z (B, 4, 8, 8). Parameters "encoder.down.0.res.conv1.weight", ...
 * Configs are JSON files (weights/vae.json); absent keys keep the values of
 * the config passed in, unknown keys are errors. */
typedef struct da_vae_config {
    int in_channels;       /* 3 */
    int latent_channels;   /* 4 */
    int ch[3];             /* widths of the three levels: 32, 64, 128 */
    int groups;            /* GroupNorm groups (8); eps gn_eps (1e-6) */
    float gn_eps;
    float kl_weight;       /* loss = recon MSE + kl_weight * KL (1e-4) */
    float scale_factor;    /* diffusion latent = scale_factor * z; 1/std of the encoder
                              means over data, set by the trainer (default 1) */
} da_vae_config;

typedef struct da_vae {
    da_vae_config cfg;
    da_params params;
} da_vae;

da_vae_config da_vae_config_default(void);
da_status da_vae_config_load(da_vae_config *cfg, const char *path);
da_status da_vae_config_save(const da_vae_config *cfg, const char *path);
/* NULL on a bad config or out of memory (da_last_error says which). The
 * parameters are zero until da_vae_init or da_vae_load. */
da_vae *da_vae_create(const da_vae_config *cfg, int trainable);
void da_vae_init(da_vae *m, da_rng *rng);
/* safetensors; save writes metadata scale_factor, load reads it when present */
da_status da_vae_load(da_vae *m, const char *path);
da_status da_vae_save(const da_vae *m, const char *path);
void da_vae_free(da_vae *m);
/* x (B, 3, H, W), H and W multiples of 4 -> *mean, *logvar (B, 4, H/4, W/4);
 * logvar clamped to [-30, 20]. DA_ERR_INVALID (both NULL) when x does not
 * fit the config. The functions below return NULL + da_last_error() on
 * shapes that do not fit (a NULL input included): never an abort. */
da_status da_vae_encode(da_tape *t, const da_vae *m, da_tensor *x, da_tensor **mean, da_tensor **logvar);
/* z = mean + exp(0.5 logvar) * eps with eps = da_randn(rng) in mean's shape
 * (row-major), or eps given (same size as mean); mean, logvar of one shape */
da_tensor *da_vae_sample(da_tape *t, da_tensor *mean, da_tensor *logvar, da_rng *rng);
da_tensor *da_vae_sample_eps(da_tape *t, da_tensor *mean, da_tensor *logvar, const float *eps);
/* z (B, 4, h, w) -> x_hat (B, 3, 4h, 4w) */
da_tensor *da_vae_decode(da_tape *t, const da_vae *m, da_tensor *z);
/* scalar: mse(x_hat, x) + kl_weight * mean(0.5 (mean^2 + exp(logvar) - 1 - logvar));
 * *recon and *kl (either may be NULL) receive the two terms' values */
da_tensor *da_vae_loss(da_tape *t, const da_vae *m, da_tensor *x, da_tensor *x_hat,
                       da_tensor *mean, da_tensor *logvar, float *recon, float *kl);

/* Conditional UNet, eps-prediction (docs/models.md): latent (B, 4, 8, 8),
 * two levels (ch[0], ch[1]) with a ResBlock and a cross-attention
 * transformer block each, sinusoidal timestep embedding. Parameters
 * "down.0.res.conv1.weight", "mid.attn.attn2.to_k.weight", ... */
typedef struct da_unet_config {
    int in_channels;       /* 4 */
    int out_channels;      /* 4 */
    int ch[2];             /* 64, 128 (unet-b: 48, 96) */
    int groups;            /* GroupNorm groups: 16 */
    float gn_eps;          /* 1e-5 */
    float ln_eps;          /* 1e-5 */
    int n_heads;           /* 4 */
    int context_dim;       /* text encoder width: 128 */
    int time_freq_dim;     /* sinusoidal embedding size: 64 */
    int time_dim;          /* time MLP width: 256 */
} da_unet_config;

typedef struct da_unet {
    da_unet_config cfg;
    da_params params;
} da_unet;

da_unet_config da_unet_config_default(void);
da_status da_unet_config_load(da_unet_config *cfg, const char *path);
da_status da_unet_config_save(const da_unet_config *cfg, const char *path);
da_unet *da_unet_create(const da_unet_config *cfg, int trainable);   /* NULL on error */
void da_unet_init(da_unet *m, da_rng *rng);
da_status da_unet_load(da_unet *m, const char *path);
da_status da_unet_save(const da_unet *m, const char *path);
void da_unet_free(da_unet *m);
/* x_t (B, 4, H, W) (H, W even), timesteps (B) (integer values as floats),
 * context (B, T, context_dim), context_keep (B, T) or NULL (0 = padding,
 * each row needs one kept token) -> eps (B, 4, H, W). NULL +
 * da_last_error() when a shape does not fit the config (never an abort). */
da_tensor *da_unet_forward(da_tape *t, const da_unet *m, da_tensor *x, const float *timesteps,
                           da_tensor *context, const uint8_t *context_keep);

/* ------------------------------------------------------------------------ */
/* Text encoder and CLIP (src/models)                                       */
/* ------------------------------------------------------------------------ */

/* CLIP text tower (docs/models.md): token + position embeddings, n_layers
 * pre-LN blocks (causal self-attention with key padding, MLP d -> 4d -> d with
 * exact GELU), final layernorm. Configs are JSON files of integers. */
typedef struct da_text_config {
    int vocab_size;   /* V: set it from the tokenizer (default 64) */
    int context;      /* maximum tokens per row (24) */
    int d_model;      /* 128 */
    int n_layers;     /* 3 */
    int n_heads;      /* 4 */
    int mlp_ratio;    /* MLP hidden width = mlp_ratio * d_model (4) */
    int proj_dim;     /* text_projection output = CLIP embedding width (128) */
} da_text_config;

typedef struct da_text_encoder {
    da_text_config cfg;
    da_params params;   /* token_embedding.weight, layers.0.attn.q_proj.weight, ... */
} da_text_encoder;

da_text_config da_text_config_default(void);
da_status da_text_config_check(const da_text_config *cfg);
da_status da_text_config_save(const da_text_config *cfg, const char *path);  /* atomic */
da_status da_text_config_load(da_text_config *cfg, const char *path);        /* strict */
/* NULL (and da_last_error) on a bad config or no memory; grads iff trainable */
da_text_encoder *da_text_encoder_create(const da_text_config *cfg, int trainable);
void da_text_encoder_init(da_text_encoder *m, da_rng *rng);
da_status da_text_encoder_load(da_text_encoder *m, const char *path);
da_status da_text_encoder_save(const da_text_encoder *m, const char *path);
void da_text_encoder_free(da_text_encoder *m);
/* ids (B, T) in [0, V); keep (B, T): 1 = real token (BOS/EOS included),
 * 0 = PAD; 1 <= T <= context -> token features (B, T, d_model) after final_ln
 * (the UNet's cross-attention context). NULL + da_last_error() on a bad id or size. */
da_tensor *da_text_encoder_forward(da_tape *t, const da_text_encoder *m, const int *ids,
                                   const uint8_t *keep, int B, int T);
/* eos (B) = index of the last real token of each row; DA_ERR_INVALID for an empty row */
da_status da_text_eos_positions(int *eos, const uint8_t *keep, int B, int T);
/* x (B, T, D), pos (B) in [0, T) -> (B, D) = x[b, pos[b], :]. This and pool:
 * NULL + da_last_error() on a bad shape or position (never an abort). */
da_tensor *da_text_gather(da_tape *t, da_tensor *x, const int *pos);
/* features (B, T, d_model), eos (B) -> text_projection(features[b, eos[b]]) (B, proj_dim) */
da_tensor *da_text_encoder_pool(da_tape *t, const da_text_encoder *m, da_tensor *features,
                                const int *eos);

/* CLIP image tower: conv_in, n_blocks x [GroupNorm, SiLU, conv k3 s2 p1],
 * norm_out, SiLU, mean over space, visual_projection (no bias); plus the
 * learned logit_scale. The text side is the text encoder above. */
#define DA_CLIP_MAX_BLOCKS 6
typedef struct da_clip_config {
    int image_size;    /* 32 */
    int in_channels;   /* 3 */
    int n_blocks;      /* 3 stride-2 blocks: 32 -> 16 -> 8 -> 4 */
    int channels[DA_CLIP_MAX_BLOCKS + 1]; /* conv_in's output, then each block's: 32, 64, 128, 128 */
    int groups;        /* GroupNorm groups (8) */
    int embed_dim;     /* 128 (= the text encoder's proj_dim) */
} da_clip_config;

typedef struct da_clip {
    da_clip_config cfg;
    da_params params;   /* visual.conv_in.weight, ..., visual_projection.weight, logit_scale */
} da_clip;

da_clip_config da_clip_config_default(void);
da_status da_clip_config_check(const da_clip_config *cfg);
da_status da_clip_config_save(const da_clip_config *cfg, const char *path);  /* atomic */
da_status da_clip_config_load(da_clip_config *cfg, const char *path);        /* strict */
da_clip *da_clip_create(const da_clip_config *cfg, int trainable);           /* NULL on error */
void da_clip_init(da_clip *m, da_rng *rng);   /* logit_scale = log(1/0.07) */
da_status da_clip_load(da_clip *m, const char *path);
da_status da_clip_save(const da_clip *m, const char *path);
void da_clip_free(da_clip *m);
/* images (B, in_channels, S, S) in [-1, 1] -> embeddings (B, embed_dim), not
 * normalised. NULL + da_last_error() when the shape does not match the config. */
da_tensor *da_clip_image_forward(da_tape *t, const da_clip *m, da_tensor *images);
/* the logit_scale parameter as a tape leaf, shape () */
da_tensor *da_clip_logit_scale(da_tape *t, const da_clip *m);
/* x (N, D) -> x / max(||x||_2, 1e-12) per row (torch.nn.functional.normalize);
 * this and the loss: NULL + da_last_error() on other shapes */
da_tensor *da_clip_normalize(da_tape *t, da_tensor *x);
/* Symmetric InfoNCE: logits (B, B) = min(exp(logit_scale), 100) *
 * normalize(img) @ normalize(txt)^T; loss = (CE(logits, arange) + CE(logits^T,
 * arange)) / 2. img_emb, txt_emb (B, E); logit_scale (). -> scalar */
da_tensor *da_clip_loss(da_tape *t, da_tensor *img_emb, da_tensor *txt_emb, da_tensor *logit_scale);
/* Plain floats, no tape. cos (N) = cosine similarity of rows a[i], b[i] (N, E);
 * score (N) = CLIPScore = 100 * max(cos, 0) (torchmetrics' convention). */
void da_clip_cosine(float *cos, const float *a, const float *b, int N, int E);
void da_clip_score(float *score, const float *img_emb, const float *txt_emb, int N, int E);

/* ------------------------------------------------------------------------ */
/* Training harness (src/train)                                             */
/* The loop every trainer shares: accumulation, clipping, LR schedule,      */
/* AdamW, EMA, JSONL metrics, progress bar, atomic checkpoints, bit-exact   */
/* resume, SIGINT/SIGTERM. docs/training.md has the long form.              */
/* ------------------------------------------------------------------------ */

/* Progress bar (src/core/progress.c), drawn on a file descriptor (2 for
 * stderr). On a terminal: one line redrawn with '\r' at most every
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

void da_progress_init(da_progress *p, int fd, const char *label, long start, long total, long plain_every);
void da_progress_update(da_progress *p, long step, float loss);  /* step = steps done */
void da_progress_finish(da_progress *p);

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

int da_metric_name_ok(const char *name);
/* resume_step < 0: start a new log (truncate). resume_step >= 0: keep the
 * complete lines whose "step" <= resume_step (rewritten atomically), drop
 * the rest, then append. */
da_status da_metrics_open(da_metrics_log *m, const char *path, long resume_step);
da_status da_metrics_write(da_metrics_log *m, long step, const da_metric *fields, int n);
da_status da_metrics_sync(da_metrics_log *m);  /* fsync: called at each checkpoint */
void da_metrics_close(da_metrics_log *m);

/* Trainer configuration. da_trainer_defaults() fills every field; a trainer
 * overrides what it needs. Every field from total_steps to seed is stored
 * in checkpoints and must match on resume (else the run would not continue
 * bit-identically). Strings are copied by da_trainer_create. */
typedef struct da_trainer_config {
    const char *name;          /* "unet": progress label, checkpoint metadata */
    long total_steps;          /* optimizer steps of the whole run (LR schedule) */
    int batch;                 /* examples per optimizer step */
    int micro_batches;         /* accumulation: step_fn runs this many times per
                                * step, on batch / micro_batches examples each */
    float lr, min_lr;          /* base LR; the cosine schedule ends at min_lr */
    long warmup;               /* linear warmup steps */
    da_lr_kind schedule;
    float beta1, beta2, eps, weight_decay;  /* AdamW */
    float clip;                /* max global gradient norm; 0: no clipping */
    float ema_decay;           /* EMA of the weights; 0: no EMA buffer */
    uint64_t seed;             /* data_rng gets seed, noise_rng seed ^ 0x9e3779b9 */
    /* not part of the stored config: */
    long stop_at;              /* 0: run to total_steps; else stop after this step */
    const char *ckpt_path;     /* NULL: no checkpoints */
    long ckpt_every;           /* also every N steps (0: only at the end / on a signal) */
    const char *metrics_path;  /* NULL: no JSONL log */
    long log_every;            /* a metrics line every N steps (and at the last) */
    int progress;              /* 1: progress bar and messages on stderr */
    long progress_every;       /* non-TTY progress line period (0: total/10) */
    int handle_signals;        /* 1: SIGINT/SIGTERM end the run with a checkpoint
                                * (a signal ignored at start stays ignored) */
} da_trainer_config;

da_trainer_config da_trainer_defaults(void);

#define DA_TRAINER_MAX_METRICS 16

typedef struct da_trainer da_trainer;
/* One micro-batch: build the forward on `tape` (already reset), call
 * da_tape_backward, and set *loss to the micro-batch's MEAN loss. Draw all
 * randomness from tr->data_rng / tr->noise_rng and keep no state across
 * steps outside the trainer: that is what makes resume bit-exact. The
 * harness zeroes gradients before micro 0 and scales their sum by
 * 1/micro_batches afterwards. Extra metrics: da_trainer_metric(). */
typedef da_status (*da_step_fn)(da_trainer *tr, da_tape *tape, int micro, void *user, float *loss);

struct da_trainer {
    da_trainer_config cfg;   /* a copy; its strings are owned by the trainer */
    da_params *params;       /* the model (not owned); must have gradients */
    float *m, *v;            /* AdamW moments, same layout as params->data */
    float *ema;              /* EMA weights (same layout) or NULL */
    long step;               /* optimizer steps completed */
    int micro_size;          /* batch / micro_batches */
    da_rng data_rng, noise_rng;
    da_tape tape;
    float lr, loss;          /* LR and mean loss of the last step */
    double grad_norm;        /* global gradient norm of the last step, before clipping */
    double elapsed_s;        /* training wall time, summed over resumed sessions */
    int resumed;             /* state came from da_trainer_resume */
    int stop_signal;         /* signal that ended da_trainer_run, or 0 */
    int n_metrics;           /* extra metrics of the current step (mean over micro-batches) */
    char metric_name[DA_TRAINER_MAX_METRICS][32];
    double metric_sum[DA_TRAINER_MAX_METRICS];
    int metric_count[DA_TRAINER_MAX_METRICS];
};

/* Validates cfg; params must be allocated with gradients and initialised
 * (the EMA starts as a copy). */
da_status da_trainer_create(da_trainer **out, const da_trainer_config *cfg, da_params *params);
/* Load a checkpoint written by this trainer's config and model: params, m,
 * v, EMA, step, RNGs. Refused (trainer untouched) when the model's tensors
 * or the stored config differ; the message names the field or tensor. */
da_status da_trainer_resume(da_trainer *tr, const char *path);
/* Run from tr->step to cfg.total_steps (or cfg.stop_at). Returns DA_OK when
 * the loop ended, also when a signal ended it (tr->stop_signal says so, a
 * checkpoint was saved); an error otherwise (a failed step, a non-finite
 * loss: no checkpoint is written, the last one stays valid). */
da_status da_trainer_run(da_trainer *tr, da_step_fn fn, void *user);
/* Exit code for the CLI: 0, 1 on error, 128 + signal (130 SIGINT, 143 SIGTERM). */
int da_trainer_exit_code(const da_trainer *tr, da_status status);
/* Record a named value for this step's metrics line (called from step_fn). */
void da_trainer_metric(da_trainer *tr, const char *name, double value);
/* Atomic checkpoint: "param.X", "adam_m.X", "adam_v.X", "ema.X" for every
 * parameter X, with step, RNG states and config in the metadata. */
da_status da_trainer_save(const da_trainer *tr, const char *path);
/* The weights alone under their plain names (the EMA when use_ema and kept). */
da_status da_trainer_save_weights(const da_trainer *tr, const char *path, int use_ema,
                                  const da_st_meta *meta, int n_meta);
void da_trainer_free(da_trainer *tr);

/* ------------------------------------------------------------------------ */
/* Pretraining (src/train/pretrain*.c): `dalign train clip|vae|unet`.       */
/* Train-split shapes-world data generated on the fly from the trainer's    */
/* RNGs; docs/training.md "Pretraining" has the long form.                  */
/* ------------------------------------------------------------------------ */

typedef enum { DA_PRETRAIN_CLIP = 0, DA_PRETRAIN_VAE = 1, DA_PRETRAIN_UNET = 2 } da_pretrain_model;

typedef struct da_pretrain_opts {
    da_pretrain_model model;
    const char *out_dir;       /* final weights + JSON configs go here ("weights") */
    const char *name;          /* unet: file basename ("unet", "unet-b"); clip writes
                                * text_encoder.* and clip.*, vae writes vae.* */
    const char *weights_dir;   /* unet: frozen text_encoder.* and vae.* (NULL: out_dir) */
    const char *resume;        /* checkpoint to continue from, or NULL */
    da_text_config text;       /* clip: the two towers */
    da_clip_config clip;
    da_vae_config vae;         /* vae: architecture and kl_weight */
    da_unet_config unet;       /* unet: architecture; in/out channels and context_dim
                                * are taken from the frozen VAE and text encoder */
    int dedupe;                /* clip: re-draw an example whose caption fits another
                                * image of the batch (InfoNCE false negatives) */
    int cache_size;            /* unet: train images encoded once at the start */
    float cond_dropout;        /* unet: fraction of empty prompts (CFG) */
    float min_snr_gamma;       /* unet: > 0 weights each sample's eps MSE by
                                * min(SNR_t, gamma) / SNR_t (Min-SNR, Hang et al.
                                * 2023; default 5); 0: the plain mean */
    int scale_images;          /* vae: images for the latent scale factor */
    int eval_images;           /* vae: held-out images for the final PSNR */
} da_pretrain_opts;

typedef struct da_pretrain_result {
    long steps;                /* optimizer steps completed */
    float loss;                /* loss of the last step */
    float psnr;                /* vae: held-out PSNR (dB) of the final weights */
    float scale_factor;        /* vae: 1 / std of the encoder means */
    int stop_signal;           /* the signal that stopped the run, or 0 */
    int exit_code;             /* da_trainer_exit_code: 0, 1, 130, 143 */
} da_pretrain_result;

/* Defaults of `dalign train MODEL` ("clip", "vae", "unet"): trainer config
 * (steps, batch, LR schedule, EMA, ...) and options. DA_ERR_INVALID names
 * an unknown model. */
da_status da_pretrain_defaults(const char *model, da_trainer_config *tc, da_pretrain_opts *o);
/* Train o->model (resuming from o->resume when set), then write its weights
 * (the EMA when kept) and JSON configs into o->out_dir. A run stopped early
 * (a signal, tc->stop_at) writes only its checkpoint. res may be NULL. */
da_status da_pretrain_run(const da_trainer_config *tc, const da_pretrain_opts *o, da_pretrain_result *res);
da_status da_pretrain_clip(const da_trainer_config *tc, const da_pretrain_opts *o, da_pretrain_result *res);
da_status da_pretrain_vae(const da_trainer_config *tc, const da_pretrain_opts *o, da_pretrain_result *res);
da_status da_pretrain_unet(const da_trainer_config *tc, const da_pretrain_opts *o, da_pretrain_result *res);

/* ------------------------------------------------------------------------ */
/* Shapes world (src/data): generator, captions, tokenizer, parser, detector */
/* ------------------------------------------------------------------------ */

/* (section: shapes world) */

/* A procedural world with known ground truth (docs/shapes-world.md has the
 * palette, the grammar, the splits and the detector's thresholds).
 * Images are (3, DA_IMG, DA_IMG) float planar CHW in [0, 1], PyTorch order. */
#define DA_IMG 32
#define DA_IMG_FLOATS (3 * DA_IMG * DA_IMG)
#define DA_ANY (-1)           /* attribute a prompt leaves unconstrained */
#define DA_MAX_OBJECTS 2      /* objects in a scene or a prompt */
#define DA_CAPTION_MAX 160    /* bytes that always hold a generated caption */

enum { DA_RED, DA_GREEN, DA_BLUE, DA_YELLOW, DA_PURPLE, DA_ORANGE, DA_PINK, DA_CYAN, DA_N_COLOURS };
enum { DA_BG_WHITE, DA_BG_BLACK, DA_BG_GRAY, DA_N_BACKGROUNDS };
enum { DA_CIRCLE, DA_SQUARE, DA_TRIANGLE, DA_N_SHAPES };
enum { DA_SMALL, DA_LARGE, DA_N_SIZES };
/* obj[0] RELATION obj[1]; image y grows downwards */
enum { DA_LEFT_OF, DA_RIGHT_OF, DA_ABOVE, DA_BELOW, DA_N_RELATIONS };

const char *da_colour_name(int colour);          /* "red"; NULL when out of range */
const char *da_background_name(int background);  /* "white" */
const char *da_shape_name(int shape);            /* "circle" */
const char *da_size_name(int size);              /* "small" */
const char *da_relation_name(int relation);      /* "left of" */
const uint8_t *da_colour_rgb(int colour);        /* 3 bytes; NULL when out of range */
const uint8_t *da_background_rgb(int background);

/* One object: attributes, and for a scene its placement: top-left pixel
 * (x, y) and extent d (the object fits in [x, x+d) x [y, y+d)). Parsed
 * prompts leave any attribute DA_ANY and the placement 0. */
typedef struct da_object {
    int colour, shape, size;
    int x, y, d;
} da_object;

/* A scene (generator, renderer) or a prompt's spec (parser, faithfulness). */
typedef struct da_scene {
    int n_objects;                 /* 1 or 2 */
    da_object obj[DA_MAX_OBJECTS];
    int relation;                  /* obj[0] REL obj[1] when 2 objects, else DA_ANY */
    int background;                /* DA_ANY: not stated (prompts only) */
} da_scene;

/* Splits: TRAIN scenes never contain a held-out element; HELDOUT scenes
 * contain at least one (half a held-out colour-shape pair, half a held-out
 * shape-relation-shape layout). */
typedef enum { DA_SPLIT_TRAIN = 0, DA_SPLIT_HELDOUT = 1 } da_split;
#define DA_HELDOUT_PAIR 1u        /* a held-out (colour, shape) object */
#define DA_HELDOUT_RELATION 2u    /* a held-out (shape, relation, shape) layout */
int da_world_pair_heldout(int colour, int shape);
int da_world_triple_heldout(int shape0, int relation, int shape1);
unsigned da_scene_heldout(const da_scene *s);   /* DA_HELDOUT_* bits; 0: a train scene */

/* Sample a placed scene of the split (spec only; render it separately). */
da_status da_world_sample(da_rng *rng, da_split split, da_scene *s);
/* Draw the scene into img (DA_IMG_FLOATS): hard edges, exact palette values. */
da_status da_world_render(const da_scene *s, float *img);
/* A caption for the scene with a phrasing drawn from rng (NULL: the
 * canonical phrasing, every attribute stated). DA_ERR_RANGE if cap is short. */
da_status da_world_caption(da_rng *rng, const da_scene *s, char *buf, size_t cap);
/* sample + render + caption: one training example. img and caption may be NULL. */
da_status da_world_example(da_rng *rng, da_split split, da_scene *s, float *img,
                           char *caption, size_t cap);
/* n evaluation prompts of a split whose scenes are pairwise different in
 * meaning (colours, shapes, sizes, relation, background); texts is n rows of
 * `stride` bytes (stride >= DA_CAPTION_MAX), scenes may be NULL.
 * DA_ERR_RANGE when the split cannot supply n distinct scenes in reasonable time. */
da_status da_world_prompts(da_rng *rng, da_split split, int n, da_scene *scenes,
                           char *texts, size_t stride);
/* (3, H, W) floats in [0, 1] -> H*W*3 interleaved bytes (clamped, rounded) */
void da_image_to_rgb8(const float *img, int H, int W, uint8_t *rgb);
/* Rendering styles of one scene (docs/shapes-world.md, "Styles"). OUTLINE
 * adds a 1 px line of da_outline_rgb(background) on every background pixel
 * 4-adjacent to an object; object pixels are those of PLAIN. */
typedef enum { DA_STYLE_PLAIN = 0, DA_STYLE_OUTLINE = 1, DA_N_STYLES } da_style;
const char *da_style_name(int style);                     /* "plain", "outline"; NULL out of range */
da_status da_style_parse(const char *name, da_style *out); /* DA_ERR_INVALID naming the word */
const uint8_t *da_outline_rgb(int background);            /* 3 bytes; NULL out of range */
/* da_world_render in a style (PLAIN: the same bits as da_world_render) */
da_status da_world_render_style(const da_scene *s, da_style style, float *img);

/* Parse a prompt into its spec. Unknown or misplaced words give
 * DA_ERR_INVALID with a message naming the word and its position. */
da_status da_parse_prompt(const char *text, da_scene *out);

/* Word-level tokenizer over the grammar's vocabulary. Lower-cases; commas and
 * periods separate words and are dropped. ids are padded to DA_MAX_TOKENS:
 * BOS w1 .. wn EOS PAD...; keep[i] = 1 for real tokens, 0 for padding (the
 * key mask of da_attention). */
#define DA_MAX_TOKENS 24
#define DA_TOK_PAD 0
#define DA_TOK_BOS 1
#define DA_TOK_EOS 2
#define DA_TOK_UNK 3
typedef struct da_tok_report {
    int n_tokens;       /* real tokens, BOS and EOS included */
    int n_unknown;      /* words mapped to UNK */
    int n_truncated;    /* words dropped past DA_MAX_TOKENS - 2 */
    char unknown[128];  /* the unknown words, space-separated (cut when long) */
} da_tok_report;
int da_vocab_size(void);
const char *da_vocab_word(int id);       /* "<pad>", "<bos>", ...; NULL when out of range */
int da_vocab_id(const char *word);       /* exact lower-case word; DA_TOK_UNK when absent */
/* Never fails on text content: unknown words become UNK and are reported in
 * rep (may be NULL). DA_ERR_INVALID only for NULL text/ids. */
da_status da_tokenize(const char *text, int *ids, uint8_t *keep, da_tok_report *rep);
/* ids[0..n): BOS skipped, stops at EOS or PAD, UNK written "<unk>", words
 * joined by one space. DA_ERR_INVALID for an id outside the vocabulary,
 * DA_ERR_RANGE when buf is too small. */
da_status da_detokenize(const int *ids, int n, char *buf, size_t cap);

/* Detector: nearest-palette classes, 4-connected components, fill ratio and
 * centroid offset for the shape, area for the size. */
#define DA_MAX_DETECTIONS 8
typedef struct da_detection {
    int colour, shape, size;
    float cx, cy;          /* centroid in pixels; pixel (i, j) has centre (j + .5, i + .5) */
    int area;
    int x0, y0, x1, y1;    /* bounding box, inclusive */
    float fill;            /* area / bounding-box area */
} da_detection;
typedef struct da_detect_result {
    int background;        /* DA_BG_* or DA_ANY when the border is mostly an object colour */
    int n;                 /* objects kept, largest first */
    da_detection obj[DA_MAX_DETECTIONS];
} da_detect_result;
da_status da_detect(const float *img, da_detect_result *out);
/* Outline-style detector: for each detected object (largest 8) the share
 * of its ring (the non-object pixels 4-adjacent to it) whose colour unmixes
 * as at least half the outline colour of the detected background, against
 * that background and the object's own colour; *score is the mean share
 * over the objects it could judge, in [0, 1] (0: none, e.g. no object or
 * an object of the outline's colour). >= DA_OUTLINE_THRESHOLD: in the
 * style. n_judged (may be NULL) gets the number of objects judged. */
#define DA_OUTLINE_THRESHOLD 0.5f
da_status da_outline_score(const float *img, float *score, int *n_judged);

/* faithfulness: the fraction of a prompt's clauses an image satisfies.
 * Clauses: per prompt object its colour, shape and size (each when stated),
 * the relation (two objects), the background (when stated). Prompt objects
 * are matched to detections by the assignment satisfying most clauses. */
typedef enum { DA_CLAUSE_COLOUR, DA_CLAUSE_SHAPE, DA_CLAUSE_SIZE, DA_CLAUSE_RELATION,
               DA_CLAUSE_BACKGROUND, DA_N_CLAUSE_TYPES } da_clause_type;
#define DA_MAX_CLAUSES (3 * DA_MAX_OBJECTS + 2)
typedef struct da_clause {
    int type;          /* da_clause_type */
    int object;        /* prompt object (0, 1), or -1 for relation / background */
    int satisfied;
} da_clause;
typedef struct da_faith {
    float score;                    /* n_satisfied / n_clauses */
    int n_clauses, n_satisfied;
    da_clause clause[DA_MAX_CLAUSES];
    int n_type[DA_N_CLAUSE_TYPES], sat_type[DA_N_CLAUSE_TYPES];
    int match[DA_MAX_OBJECTS];      /* detection matched to each prompt object, -1: none */
    int n_detected;                 /* objects in the image (extra ones cost nothing) */
} da_faith;
/* Check a prompt spec against detections (pure; no image needed). */
da_status da_faith_check(const da_detect_result *det, const da_scene *prompt, da_faith *out);
/* parse + detect + check. out may be NULL; *score gets the fraction.
 * Parse errors return DA_ERR_INVALID (message names the word). */
da_status da_faithfulness(const float *img, const char *prompt, da_faith *out, float *score);

/* ------------------------------------------------------------------------ */
/* Diffusion (src/diffusion): noise schedules and samplers                  */
/* ------------------------------------------------------------------------ */

/* (section: diffusion) */

/* Every sampler step is a pure function over float* latents of any size n
 * (a batch is just n = B*C*H*W), following diffusers' schedulers operation
 * by operation in float32; docs/samplers.md maps each equation to code.
 * Samplers borrow their da_schedule: it must outlive them. */

typedef enum { DA_BETA_LINEAR = 0, DA_BETA_SCALED_LINEAR = 1 } da_beta_schedule;
typedef enum { DA_PRED_EPSILON = 0, DA_PRED_V = 1, DA_PRED_SAMPLE = 2 } da_prediction;
/* how inference timesteps are spread over [0, T): diffusers' timestep_spacing */
typedef enum { DA_SPACING_LEADING = 0, DA_SPACING_TRAILING = 1, DA_SPACING_LINSPACE = 2 } da_spacing;

typedef struct da_schedule {
    int n_train;             /* T training timesteps (diffusers num_train_timesteps) */
    float *betas;            /* (T) */
    float *alphas;           /* (T) 1 - betas */
    float *alphas_cumprod;   /* (T) prod_{s <= t} alphas[s] */
} da_schedule;

/* "linear" | "scaled_linear"; "epsilon" | "v_prediction" | "sample";
 * "leading" | "trailing" | "linspace". DA_ERR_INVALID names a bad string. */
da_status da_beta_schedule_parse(const char *name, da_beta_schedule *out);
da_status da_prediction_parse(const char *name, da_prediction *out);
da_status da_spacing_parse(const char *name, da_spacing *out);
/* torch.linspace(start, end, n, dtype=torch.float32) on CPU, bit for bit */
void da_linspace_f32(float *out, float start, float end, int n);
/* linear: betas = linspace(beta_start, beta_end, T); scaled_linear:
 * linspace(sqrt(beta_start), sqrt(beta_end), T)^2; alphas_cumprod =
 * cumprod(1 - betas). Bit-identical to torch 1.13's float32 values.
 * DA_ERR_INVALID unless T >= 1 and every beta is in [0, 1). */
da_status da_schedule_init(da_schedule *s, da_beta_schedule kind, int n_train,
                           double beta_start, double beta_end);
void da_schedule_free(da_schedule *s);
/* set_timesteps: n_steps timesteps in descending order into out (n_steps).
 * DA_ERR_INVALID unless 1 <= n_steps <= T and every timestep is in [0, T). */
da_status da_timesteps(int *out, int n_steps, int n_train, da_spacing spacing, int steps_offset);

/* Training targets, per batch item b at timestep t[b] in [0, T), n_per
 * values each (a = alphas_cumprod[t[b]]):
 *   add_noise (q_sample): x_t = sqrt(a) x0 + sqrt(1 - a) eps
 *   velocity (v target):  v   = sqrt(a) eps - sqrt(1 - a) x0
 * DA_ERR_RANGE, before writing anything, when a t[b] is outside [0, T). */
da_status da_add_noise(const da_schedule *s, float *xt, const float *x0, const float *eps,
                       const int *t, int B, size_t n_per);
da_status da_velocity(const da_schedule *s, float *v, const float *x0, const float *eps,
                      const int *t, int B, size_t n_per);
/* Clean-sample and noise estimates from a model output at alphas_cumprod a:
 *   epsilon: x0 = (x - sqrt(1-a) m) / sqrt(a),  eps = m
 *   v:       x0 = sqrt(a) x - sqrt(1-a) m,      eps = sqrt(a) m + sqrt(1-a) x
 *   sample:  x0 = m,                            eps = (x - sqrt(a) x0) / sqrt(1-a)
 * x0/eps (n) may alias the inputs; eps may be NULL. */
void da_predict_x0_eps(float *x0, float *eps, const float *model_out, const float *sample,
                       size_t n, float alpha_cumprod, da_prediction pred);

/* Classifier-free guidance: out = eps_u + w (eps_c - eps_u). w == 1 returns
 * eps_c exactly (no guidance). out may alias either input. */
void da_cfg_combine(float *out, const float *eps_u, const float *eps_c, float w, size_t n);

/* ---- DDIM (diffusers DDIMScheduler) ---- */
typedef struct da_ddim_config {
    da_prediction prediction;   /* epsilon */
    da_spacing spacing;         /* leading */
    int steps_offset;           /* 0 (Stable Diffusion uses 1) */
    int clip_sample;            /* 1: clamp x0_hat to [-clip_sample_range, clip_sample_range] */
    float clip_sample_range;    /* 1 */
    int set_alpha_to_one;       /* 1: alpha_prev = 1 after the last step, else alphas_cumprod[0] */
    float eta;                  /* 0: deterministic DDIM; 1: DDPM-like variance (a step() arg in diffusers) */
    int use_clipped_model_output; /* 0: re-derive eps from the clipped x0 (a step() arg in diffusers) */
} da_ddim_config;
da_ddim_config da_ddim_config_default(void);   /* diffusers' defaults (values above) */

typedef struct da_ddim {
    const da_schedule *sched;   /* borrowed */
    da_ddim_config cfg;
    int n_steps;
    int *timesteps;             /* (n_steps) descending, owned */
    float final_alpha_cumprod;  /* alpha_prev when t - T/n_steps < 0 */
} da_ddim;

da_status da_ddim_init(da_ddim *d, const da_schedule *s, const da_ddim_config *cfg, int n_steps);
void da_ddim_free(da_ddim *d);
int da_ddim_prev_timestep(const da_ddim *d, int t);     /* t - T / n_steps */
float da_ddim_alpha_cumprod(const da_ddim *d, int t);   /* alphas_cumprod[t], final_alpha_cumprod for t < 0 */
/* sigma_t^2 / eta^2 = (1 - a_prev)/(1 - a_t) * (1 - a_t/a_prev) (diffusers _get_variance) */
float da_ddim_variance(const da_ddim *d, int t, int t_prev);
/* One step from timestep t: prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - std^2) eps_hat
 * (+ std * noise when eta > 0), std = eta sqrt(variance). noise (n) is N(0,1)
 * and only read when eta > 0 (then it must not be NULL). x0_pred (n) receives
 * x0_hat after clipping, or is NULL. prev/x0_pred may alias sample or
 * model_out. DA_ERR_RANGE for t outside [0, T). */
da_status da_ddim_step(const da_ddim *d, float *prev, float *x0_pred, const float *model_out,
                       int t, const float *sample, const float *noise, size_t n);
/* The same, drawing noise as diffusers does (torch.randn(n) from rng iff
 * eta > 0) into the caller's scratch `noise` (n floats). */
da_status da_ddim_step_rng(const da_ddim *d, float *prev, float *x0_pred, const float *model_out,
                           int t, const float *sample, da_rng *rng, float *noise, size_t n);
/* DDIM step log-probability (design §6, DDPO), per batch item b of n_per values:
 * logp[b] = mean_i [ -(x_prev - mean)^2 / (2 std^2) - log std - log sqrt(2 pi) ],
 * mean = the step's noiseless output, std = eta sqrt(variance). Needs std > 0
 * (eta > 0 and a_prev < 1), else DA_ERR_INVALID. Backward accumulates
 * d logp / d model_out (x_prev and sample are constants, as in DDPO). */
da_status da_ddim_logprob_forward(float *logp, const float *model_out, const float *x_prev,
                                  const float *sample, const da_ddim *d, int t, int B, size_t n_per);
void da_ddim_logprob_backward(float *dmodel_out, const float *dlogp, const float *model_out,
                              const float *x_prev, const float *sample, const da_ddim *d, int t,
                              int B, size_t n_per);
/* model_out, x_prev, sample (B, ...) -> logp (B); gradient flows to model_out
 * only; `d` must outlive the backward pass. NULL (da_last_error set) when std == 0,
 * t is out of range or the three differ in size. */
da_tensor *da_ddim_logprob(da_tape *tp, const da_ddim *d, da_tensor *model_out, da_tensor *x_prev,
                           da_tensor *sample, int t);

/* ---- DDPM (diffusers DDPMScheduler) ---- */
typedef enum { DA_VAR_FIXED_SMALL = 0, DA_VAR_FIXED_SMALL_LOG = 1, DA_VAR_FIXED_LARGE = 2 } da_variance_type;
da_status da_variance_type_parse(const char *name, da_variance_type *out); /* "fixed_small" ... */

typedef struct da_ddpm_config {
    da_prediction prediction;   /* epsilon */
    da_variance_type variance;  /* fixed_small */
    da_spacing spacing;         /* leading */
    int steps_offset;           /* 0 */
    int clip_sample;            /* 1 */
    float clip_sample_range;    /* 1 */
} da_ddpm_config;
da_ddpm_config da_ddpm_config_default(void);

typedef struct da_ddpm {
    const da_schedule *sched;   /* borrowed */
    da_ddpm_config cfg;
    int n_steps;                /* T gives the full ancestral chain T-1 .. 0 */
    int *timesteps;             /* (n_steps) descending, owned */
} da_ddpm;

da_status da_ddpm_init(da_ddpm *d, const da_schedule *s, const da_ddpm_config *cfg, int n_steps);
void da_ddpm_free(da_ddpm *d);
int da_ddpm_prev_timestep(const da_ddpm *d, int t);     /* t - T / n_steps */
/* posterior variance at t: fixed_small(_log) (1 - a_prev)/(1 - a_t) beta_t'
 * (clamped to >= 1e-20), fixed_large beta_t' = 1 - a_t/a_prev */
float da_ddpm_variance(const da_ddpm *d, int t);
/* prev = c0 x0_hat + c1 x_t (+ std * noise when t > 0; noise then required) */
da_status da_ddpm_step(const da_ddpm *d, float *prev, float *x0_pred, const float *model_out,
                       int t, const float *sample, const float *noise, size_t n);
/* draws torch.randn(n) from rng into `noise` (scratch, n floats) iff t > 0 */
da_status da_ddpm_step_rng(const da_ddpm *d, float *prev, float *x0_pred, const float *model_out,
                           int t, const float *sample, da_rng *rng, float *noise, size_t n);

/* ---- Euler (diffusers EulerDiscreteScheduler, linspace spacing, s_churn = 0) ---- */
typedef struct da_euler {
    const da_schedule *sched;   /* borrowed */
    da_prediction prediction;
    int n_steps;
    float *timesteps;           /* (n_steps) descending, fractional: the model's t input */
    float *sigmas;              /* (n_steps + 1), sigmas[n_steps] = 0 */
    float init_noise_sigma;     /* scale of the initial N(0,1) latent (max sigma) */
} da_euler;

da_status da_euler_init(da_euler *e, const da_schedule *s, da_prediction pred, int n_steps);
void da_euler_free(da_euler *e);
/* step index i in [0, n_steps): out = sample / sqrt(sigma_i^2 + 1) (the model's input) */
da_status da_euler_scale_model_input(const da_euler *e, float *out, const float *sample, int i, size_t n);
/* prev = x + (x - x0_hat)/sigma_i * (sigma_{i+1} - sigma_i). Both:
 * DA_ERR_RANGE for i outside [0, n_steps), nothing written. */
da_status da_euler_step(const da_euler *e, float *prev, float *x0_pred, const float *model_out,
                        int i, const float *sample, size_t n);

/* ------------------------------------------------------------------------ */
/* Pipeline (src/pipeline): text -> latent -> image, PNG output             */
/* ------------------------------------------------------------------------ */

/* docs/pipeline.md has the long form: the flow, the callback contract, the
 * weights directory and the seeds. */

/* The unconditional prompt: CFG's eps_u conditions on it (unless a negative
 * prompt is given), and the UNet trainer drops captions to it. It tokenizes
 * to BOS EOS. */
#define DA_UNCOND_PROMPT ""

/* The noise process the UNet was trained with plus the inference spacing:
 * DIR/scheduler.json (diffusers' key names; optional, absent keys keep the
 * defaults, unknown keys are errors). */
typedef struct da_noise_config {
    int n_train;                    /* num_train_timesteps: 1000 */
    da_beta_schedule beta_schedule; /* "linear" */
    float beta_start, beta_end;     /* 1e-4, 0.02 */
    da_prediction prediction;       /* prediction_type: "epsilon" */
    da_spacing spacing;             /* timestep_spacing: "leading" (DDIM, DDPM; Euler is linspace) */
    int steps_offset;               /* 0 */
    int clip_sample;                /* false: latents are not bounded to [-1, 1] */
    float clip_sample_range;        /* 1 */
    int set_alpha_to_one;           /* true (DDIM) */
} da_noise_config;
da_noise_config da_noise_config_default(void);
da_status da_noise_config_load(da_noise_config *cfg, const char *path);
da_status da_noise_config_save(const da_noise_config *cfg, const char *path);  /* atomic */

typedef enum { DA_SAMPLER_DDIM = 0, DA_SAMPLER_DDPM = 1, DA_SAMPLER_EULER = 2 } da_sampler_kind;
da_status da_sampler_parse(const char *name, da_sampler_kind *out);  /* "ddim" | "ddpm" | "euler" */
const char *da_sampler_name(da_sampler_kind kind);

typedef struct da_sample_opts {
    da_sampler_kind sampler;   /* ddim */
    int steps;                 /* 20; 1..n_train */
    float cfg;                 /* guidance weight w (3); 1 = conditional only, no uncond pass */
    float eta;                 /* DDIM eta (0); must be 0 for the other samplers */
} da_sample_opts;
da_sample_opts da_sample_opts_default(void);

/* What the per-step callback sees after step `step` and may change.
 * Latents are (batch, channels, height, width) in diffusion space. */
typedef struct da_step_info {
    int step, n_steps;         /* step in [0, n_steps), increasing */
    float timestep;            /* the UNet's t input at this step */
    int batch, channels, height, width;
    const float *x;            /* latent entering the step (x_t) */
    const float *x_prev;       /* latent after the step (x_{t-1}) */
    const float *x0;           /* the step's predicted clean latent */
    const int *ids;            /* (batch, DA_MAX_TOKENS) ids conditioning this step */
    /* Set by the callback to condition the FOLLOWING steps differently
     * (both NULL, as on entry: keep). new_prompts: batch texts, a NULL entry
     * keeps its row; new_ids: (batch, DA_MAX_TOKENS) ids, BOS .. EOS then
     * PAD. Only one of the two. The pipeline copies them as soon as the
     * callback returns, so that memory need only live until then. */
    const char *const *new_prompts;
    const int *new_ids;
} da_step_info;
/* Return 0 to go on, non-zero to stop after this step. */
typedef int (*da_step_cb)(da_step_info *info, void *user);

typedef struct da_pipeline {
    da_text_encoder *text;
    da_vae *vae;
    da_unet *unet;
    da_noise_config noise;
    da_schedule sched;
    da_tape tape;              /* one tape, reset per model call, gradients off */
    int owns_models;           /* 1: loaded from a directory, freed with the pipeline */
    int latent_h, latent_w;    /* DA_IMG / 4 */
    int steps_done;            /* steps the last generate ran (< steps when stopped) */
} da_pipeline;

/* The weights directory: override when not NULL, else $DALIGN_WEIGHTS when
 * set and non-empty, else "weights" (relative to the current directory). */
const char *da_weights_dir(const char *override);
/* Load DIR/text_encoder, DIR/vae and DIR/<unet_name> (NULL: "unet"), each a
 * .json config and a .safetensors file, plus DIR/scheduler.json when present.
 * Frozen (no gradients). Errors name the file. */
da_status da_pipeline_load(da_pipeline **out, const char *dir, const char *unet_name);
/* A pipeline over models the caller owns (they must outlive it); noise NULL
 * means da_noise_config_default(). Checks that the models fit together. */
da_status da_pipeline_create(da_pipeline **out, da_text_encoder *text, da_vae *vae, da_unet *unet,
                             const da_noise_config *noise);
void da_pipeline_free(da_pipeline *p);

/* da_tokenize that refuses what the model cannot read: unknown words
 * (DA_ERR_INVALID naming them) and prompts past DA_MAX_TOKENS. */
da_status da_prompt_tokens(const char *text, int *ids, uint8_t *keep);
/* x_T for one image: torch.manual_seed(seed); torch.randn(n) (unscaled) */
void da_initial_latent(uint64_t seed, float *x, size_t n);

/* Generate n images. Image i uses prompts[i] and its own generator seeded
 * with seeds[i] (x_T, then the DDPM / DDIM-eta noise of its steps). negative
 * (NULL: DA_UNCOND_PROMPT) is the uncond side of CFG. cb may be NULL.
 * out_images (n, 3, DA_IMG, DA_IMG) in [0, 1] and out_latents (n, C, h, w),
 * the final diffusion latent, may each be NULL. When the callback stops the
 * run before its last step, the outputs come from that step's predicted x0. */
da_status da_pipeline_generate(da_pipeline *p, const da_sample_opts *opts, const char *const *prompts,
                               const char *negative, const uint64_t *seeds, int n, da_step_cb cb,
                               void *user, float *out_images, float *out_latents);
/* latents (n, C, h, w) in diffusion space -> images (n, 3, 4h, 4w) in [0, 1]:
 * VAE decode of latents / scale_factor, then (x + 1) / 2 clamped */
da_status da_pipeline_decode(da_pipeline *p, const float *latents, int n, float *out_images);

/* Images as 8-bit RGB, interleaved (H, W, 3) (src/pipeline/image.c). */
/* Size of a grid of n tiles (h, w) in cols columns with gap pixels between tiles */
void da_grid_size(int n, int cols, int h, int w, int gap, int *out_h, int *out_w);
/* tiles (n, h, w, 3) -> out (out_h, out_w, 3) row by row; gaps and empty cells get fill */
void da_rgb8_grid(uint8_t *out, const uint8_t *tiles, int n, int cols, int h, int w, int gap,
                  const uint8_t fill[3]);
/* in (h, w, 3) -> out (s*h, s*w, 3), nearest neighbour */
void da_rgb8_upscale(uint8_t *out, const uint8_t *in, int h, int w, int s);
/* PNG through stb_image_write, atomically (temp file, fsync, rename) */
da_status da_png_write(const char *path, const uint8_t *rgb, int h, int w);
/* images (n, 3, DA_IMG, DA_IMG) in [0, 1] -> one PNG: a grid of cols columns
 * (cols <= 0: ceil(sqrt(n))) with a 1-pixel gap, upscaled scale times */
da_status da_png_save_images(const char *path, const float *images, int n, int cols, int scale);

/* ------------------------------------------------------------------------ */
/* Rewards (src/rewards), the synthetic rater and the learned preference    */
/* model (src/models/reward_net.c). docs/evaluation.md, docs/rater.md.      */
/* ------------------------------------------------------------------------ */

/* Per-image measures. img (3, H, W) in [0, 1]; values are clamped to
 * [0, 1] first, as when the image is saved to a file. */
/* Hasler and Suesstrunk (2003) colourfulness on 0..255 values:
 * rg = R - G, yb = (R + G)/2 - B, M = sqrt(sd_rg^2 + sd_yb^2) +
 * 0.3 sqrt(mean_rg^2 + mean_yb^2) (population std). 0 for any grey image. */
float da_colorfulness(const float *img, int H, int W);
/* Size of the image encoded as JPEG at quality 95 by stb_image_write, in kB
 * (1000 bytes), as DDPO's compressibility rewards. */
da_status da_jpeg_kb(const float *img, int H, int W, float *kb);
/* Read a PNG (or any format stb_image reads) of exactly DA_IMG x DA_IMG
 * pixels into img (DA_IMG_FLOATS) in [0, 1]. Grey is replicated to RGB,
 * alpha is dropped. DA_ERR_IO for a missing/unreadable file, DA_ERR_FORMAT
 * for an undecodable one, DA_ERR_INVALID for another size. */
da_status da_image_load(const char *path, float *img);

/* One interface for every reward: images (B, 3, DA_IMG, DA_IMG) in [0, 1]
 * and one prompt per image -> scores (B), higher is better. Names:
 *   faithful   shapes-world faithfulness in [0, 1]; an unparsable prompt scores 0
 *   jpeg       JPEG size in kB (incompressibility)
 *   jpeg-neg   minus the JPEG size (compressibility)
 *   colorful   Hasler-Suesstrunk colourfulness
 *   clip       CLIPScore, 100 max(cos, 0), of the CLIP towers in weights_dir
 *   pref       the learned preference model in weights_dir
 * weights_dir (NULL: da_weights_dir(NULL)) holds, each as NAME.json (config)
 * + NAME.safetensors, clip and text_encoder for clip, reward_net for pref;
 * the other rewards ignore it. */
#define DA_REWARD_NAMES "faithful, jpeg, jpeg-neg, colorful, clip, pref"
typedef struct da_reward da_reward;
/* DA_ERR_INVALID (listing the valid names) for an unknown name; load errors
 * name the file. */
da_status da_reward_create(da_reward **out, const char *name, const char *weights_dir);
const char *da_reward_name(const da_reward *r);
int da_reward_needs_prompt(const da_reward *r);   /* faithful, clip, pref */
/* prompts (B) may be NULL when the reward needs none. Scores of one image
 * do not depend on the rest of the batch. */
da_status da_reward_score(const da_reward *r, const float *images, const char *const *prompts, int B,
                          float *scores);
void da_reward_free(da_reward *r);

/* The synthetic rater (docs/rater.md): the stand-in for human raters. Its
 * utility u = w_faith faith + w_size size + w_centre centre + w_contrast
 * contrast (each term in [0, 1], from the detector and the pixels). It is
 * NOT a reward name: trainers never optimise it directly. */
typedef struct da_rater_config {
    float w_faith, w_size, w_centre, w_contrast;
    float temperature;   /* Bradley-Terry: P(A > B) = sigmoid((u_A - u_B) / temperature) */
    float tie_margin;    /* |u_A - u_B| < tie_margin: a tie */
} da_rater_config;       /* defaults: weights 8, 1, 1, 0.5; temperature 0.25; tie_margin 0.05 */
typedef struct da_rater_terms {
    float faith;      /* faithfulness; 0 when the prompt does not parse */
    float size;       /* min(1, sqrt(area of the two largest objects) / 16) */
    float centre;     /* max(0, 1 - |their area-weighted centroid - image centre| / 16) */
    float contrast;   /* |luminance of object pixels - luminance of the border| */
    float utility;
    int parsed;       /* 0: the prompt did not parse */
} da_rater_terms;
da_rater_config da_rater_config_default(void);
da_status da_rater_utility(const da_rater_config *c, const float *img, const char *prompt, da_rater_terms *out);
/* sigmoid((u_a - u_b) / temperature) */
float da_rater_prob(const da_rater_config *c, float u_a, float u_b);
/* +1: A preferred, -1: B preferred, 0: a tie (|u_a - u_b| < tie_margin).
 * rng NULL: noiseless (the sign of u_a - u_b); else one da_rand draw per
 * call (also for ties, so the stream does not depend on the outcomes). */
int da_rater_label(const da_rater_config *c, float u_a, float u_b, da_rng *rng);

/* Synthetic preference pairs without a diffusion model: a scene of `split`
 * and its caption; each image is the ground-truth render, a faithful
 * re-placement, or a perturbed render (colour, shape, size, position,
 * background, noise, blur). The two images differ. */
da_status da_synth_pair(da_rng *rng, da_split split, float *img_a, float *img_b, char *prompt, size_t cap);

/* The preference model (docs/rater.md): a word-trigram embedding of the
 * prompt conditions (FiLM after every GroupNorm) a CNN over the image plus
 * two coordinate channels; mean pool, a one-hidden-layer head -> one scalar
 * per image. Names "text.embedding.weight", "text.fc.weight",
 * "visual.conv_in.weight", "visual.blocks.0.film.weight", "visual.film_out.bias",
 * "head.fc1.weight", ... */
#define DA_REWARD_NET_MAX_BLOCKS 5
#define DA_REWARD_NET_IN_CHANNELS 5   /* RGB + x, y coordinates */
typedef struct da_reward_net_config {
    int image_size;    /* 32 */
    int n_blocks;      /* stride-2 blocks: 3 (32 -> 4) */
    int channels[DA_REWARD_NET_MAX_BLOCKS + 1]; /* conv_in's output, then each block's: 32, 32, 64, 128 */
    int groups;        /* GroupNorm groups: 8 */
    int vocab_size;    /* the tokenizer's: 34 */
    int context;       /* tokens per row at most: 24 */
    int embed_dim;     /* word embedding: 32 */
    int text_dim;      /* trigram feature, the FiLM input: 64 */
    int hidden;        /* head's hidden layer: 128 */
} da_reward_net_config;
typedef struct da_reward_net {
    da_reward_net_config cfg;
    da_params params;
} da_reward_net;
da_reward_net_config da_reward_net_config_default(void);
da_status da_reward_net_config_check(const da_reward_net_config *cfg);
da_status da_reward_net_config_save(const da_reward_net_config *cfg, const char *path);  /* atomic */
da_status da_reward_net_config_load(da_reward_net_config *cfg, const char *path);        /* strict */
da_reward_net *da_reward_net_create(const da_reward_net_config *cfg, int trainable);    /* NULL on error */
void da_reward_net_init(da_reward_net *m, da_rng *rng);
da_status da_reward_net_load(da_reward_net *m, const char *path);
da_status da_reward_net_save(const da_reward_net *m, const char *path);
void da_reward_net_free(da_reward_net *m);
/* images (B, 3, S, S) in [0, 1], ids and keep (B, T) from da_tokenize (T <= context)
 * -> scores (B). NULL + da_last_error() on a bad shape or id. */
da_tensor *da_reward_net_forward(da_tape *t, const da_reward_net *m, da_tensor *images, const int *ids,
                                 const uint8_t *keep, int T);
/* Bradley-Terry loss: r_w, r_l (N) scores of the preferred and the other
 * image -> scalar mean -log sigmoid(r_w - r_l); NULL + da_last_error() when
 * their shapes differ */
da_tensor *da_bt_loss(da_tape *t, da_tensor *r_w, da_tensor *r_l);

/* Training on rater-labelled synthetic pairs (da_synth_pair, ties dropped),
 * drawn fresh each step, with AdamW on the shared trainer (checkpoints,
 * bit-exact resume, signals); validation on fixed pairs of another seed.
 * (src/rewards/reward_train.c) */
typedef struct da_reward_train_config {
    int steps;            /* optimizer steps: 8000 (0: validation only) */
    int batch;            /* pairs per step: 32 */
    float lr, min_lr;     /* cosine from lr to min_lr after warmup: 1e-3, 1e-5 */
    int warmup;           /* 100 */
    float weight_decay;   /* 0.01 */
    int val_pairs;        /* labelled pairs per validation set: 1000 */
    uint64_t seed;        /* training data, noise, init */
    int log_every;        /* progress on stderr, a line every N steps; 0: quiet */
    da_rater_config rater;
    /* the run, as in da_trainer_config (none of it changes the bits; the
     * rater config is not in the checkpoint: resume with the same one): */
    const char *ckpt_path;     /* NULL: no checkpoints */
    long ckpt_every;           /* also every N steps (0: only at the end / on a signal) */
    const char *resume;        /* checkpoint to continue from, or NULL */
    const char *metrics_path;  /* JSONL log, a line every log_every steps (every step when 0) */
    long stop_at;              /* 0: run all steps; else stop after this step */
    int handle_signals;        /* 1: SIGINT/SIGTERM stop the run with a checkpoint */
} da_reward_train_config;
typedef struct da_reward_train_report {
    float loss_first, loss_last;   /* mean BT loss over the first / last 10% of steps
                                      (NaN when some of them ran before a resume) */
    int n_val;                     /* non-tie pairs in each validation set */
    float acc, rater_acc;          /* train-split validation pairs: reward net and the
                                      noiseless rater against the rater's noisy labels */
    float heldout_acc, heldout_rater_acc;  /* the same on held-out-split scenes */
    int stop_signal;               /* the signal that stopped the run, or 0 */
    long steps_done;               /* optimizer steps completed; a run stopped before
                                      `steps` (signal, stop_at) is not validated */
} da_reward_train_report;
da_reward_train_config da_reward_train_defaults(void);
/* m trainable and initialised; rep may be NULL */
da_status da_reward_net_train(da_reward_net *m, const da_reward_train_config *cfg, da_reward_train_report *rep);
/* Pair accuracy of m on (img_w[i], img_l[i], prompts[i]) pairs where img_w
 * is the rater's choice: the fraction with r(w) > r(l). */
da_status da_reward_net_pair_accuracy(const da_reward_net *m, const float *img_w, const float *img_l,
                                      const char *const *prompts, int n, float *acc);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_H */
