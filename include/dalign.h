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
void da_threads_init(void);

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
/* transposed. OpenBLAS when built with it, else the portable kernel.       */
/* ------------------------------------------------------------------------ */

void da_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc);
/* The portable blocked kernel, always compiled (tested against OpenBLAS). */
void da_gemm_portable(int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc);
const char *da_gemm_backend(void);  /* "openblas" or "portable" */

/* ------------------------------------------------------------------------ */
/* Kernel pairs (raw float*) and their tape wrappers (da_tensor*).          */
/* Shapes in PyTorch order. Every wrapper returns its output tensor.        */
/* ------------------------------------------------------------------------ */

/* linear: out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be NULL */
void da_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int N, int C, int OC);
void da_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int N, int C, int OC);
/* x (..., C), w (OC, C), b (OC) or NULL -> (..., OC) */
da_tensor *da_linear(da_tape *t, da_tensor *x, da_tensor *w, da_tensor *b);

/* batched matmul: out (B, M, N) = a (B, M, K) @ b (B, K, N) */
void da_matmul_forward(float *out, const float *a, const float *b, int B, int M, int K, int N);
void da_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                        int B, int M, int K, int N);
/* a (..., M, K) @ b (..., K, N) with equal leading dims -> (..., M, N); 2-D is B = 1 */
da_tensor *da_matmul(da_tape *t, da_tensor *a, da_tensor *b);

/* conv2d: out (N, O, OH, OW) = inp (N, C, H, W) * weight (O, C, k, k) + bias (O);
 * OH = (H + 2*pad - k)/stride + 1. bias may be NULL. Runs per image as
 * im2col + GEMM; col is caller scratch of da_conv2d_col_size() floats, which
 * is 0 (col may be NULL) for k = 1, stride = 1, pad = 0. The tape wrapper
 * takes col from the tape's arena. */
size_t da_conv2d_col_size(int C, int H, int W, int k, int stride, int pad);
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
void da_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                           const float *q, const float *k, const float *v,
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

/* shape ops */
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
/* Shapes world (src/data): generator, captions, tokenizer, parser, detector */
/* ------------------------------------------------------------------------ */

/* (section: shapes world) */

/* ------------------------------------------------------------------------ */
/* Diffusion (src/diffusion): noise schedules and samplers                  */
/* ------------------------------------------------------------------------ */

/* (section: diffusion) */

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_H */
