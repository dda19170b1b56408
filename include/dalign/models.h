/* dalign/models.h: the models layer (src/models): the parameter table every
 * model keeps its weights in, the VAE, the UNet, the CLIP text encoder and
 * image tower, and the preference model (reward net). Forward code over the
 * core's tape (dalign/core.h); a model knows nothing of prompts, samplers or
 * files beyond its own weights and config. */
#ifndef DALIGN_MODELS_H
#define DALIGN_MODELS_H

#include "dalign/core.h"

#ifdef __cplusplus
extern "C" {
#endif

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
    int overflow;          /* an entry's size or the total overflowed: da_params_alloc fails */
} da_params;

DA_API void da_params_init(da_params *p);
/* Add an entry; returns its index. Shapes are PyTorch's (Linear (out, in),
 * Conv2d (O, I, kh, kw)). Must be called before da_params_alloc. */
DA_API int da_params_add(da_params *p, const char *name, int ndim, const int *shape);
/* Allocate data (zeroed) and, when with_grad, the gradient buffer. */
DA_API da_status da_params_alloc(da_params *p, int with_grad);
DA_API int da_params_find(const da_params *p, const char *name);        /* index or -1 */
DA_API float *da_params_get(const da_params *p, const char *name);      /* data or NULL */
/* A tape leaf for the entry named by a printf-style name (data + grad when
 * the model is trainable). A missing name is a programming error: abort. */
DA_API da_tensor *da_params_leaf(da_tape *t, const da_params *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
DA_API void da_params_zero_grad(da_params *p);
/* Save every entry as F32 (atomic); load requires every entry present with
 * the same shape and no unknown tensors, else an error naming the tensor. */
DA_API da_status da_params_save(const da_params *p, const char *path, const da_st_meta *meta, int n_meta);
DA_API da_status da_params_load(da_params *p, const char *path);
DA_API da_status da_params_load_st(da_params *p, const da_safetensors *st);
DA_API void da_params_free(da_params *p);

/* PyTorch's default inits, drawn from `rng` in table order:
 * Linear/Conv weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
DA_API void da_init_uniform(da_rng *rng, float *x, size_t n, float bound);

/* ------------------------------------------------------------------------ */
/* VAE and UNet (src/models)                                                */
/* ------------------------------------------------------------------------ */

/* The largest width any size field of a VAE or UNet config may hold
 * (channels, context_dim, time_dim, ...; image channels at most
 * DA_MAX_IMAGE_CHANNELS). The shipped models use 256 at most; the bounds
 * keep every size product (a 3x3 conv's 9 * in * out, a concatenation's
 * 2 * channels) far inside int and size_t, whatever a config file, a
 * --unet-config or a --width says. */
#define DA_MAX_CHANNELS 4096
#define DA_MAX_IMAGE_CHANNELS 64

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

DA_API da_vae_config da_vae_config_default(void);
DA_API da_status da_vae_config_load(da_vae_config *cfg, const char *path);
DA_API da_status da_vae_config_save(const da_vae_config *cfg, const char *path);
/* NULL on a bad config or out of memory (da_last_error says which). The
 * parameters are zero until da_vae_init or da_vae_load. */
DA_API da_vae *da_vae_create(const da_vae_config *cfg, int trainable);
DA_API void da_vae_init(da_vae *m, da_rng *rng);
/* safetensors; save writes metadata scale_factor, load reads it when present */
DA_API da_status da_vae_load(da_vae *m, const char *path);
DA_API da_status da_vae_save(const da_vae *m, const char *path);
DA_API void da_vae_free(da_vae *m);
/* x (B, 3, H, W), H and W multiples of 4 -> *mean, *logvar (B, 4, H/4, W/4);
 * logvar clamped to [-30, 20]. DA_ERR_INVALID (both NULL) when x does not
 * fit the config. The functions below return NULL + da_last_error() on
 * shapes that do not fit (a NULL input included): never an abort. */
DA_API da_status da_vae_encode(da_tape *t, const da_vae *m, da_tensor *x, da_tensor **mean, da_tensor **logvar);
/* z = mean + exp(0.5 logvar) * eps with eps = da_randn(rng) in mean's shape
 * (row-major), or eps given (same size as mean); mean, logvar of one shape */
DA_API da_tensor *da_vae_sample(da_tape *t, da_tensor *mean, da_tensor *logvar, da_rng *rng);
DA_API da_tensor *da_vae_sample_eps(da_tape *t, da_tensor *mean, da_tensor *logvar, const float *eps);
/* z (B, 4, h, w) -> x_hat (B, 3, 4h, 4w) */
DA_API da_tensor *da_vae_decode(da_tape *t, const da_vae *m, da_tensor *z);
/* scalar: mse(x_hat, x) + kl_weight * mean(0.5 (mean^2 + exp(logvar) - 1 - logvar));
 * *recon and *kl (either may be NULL) receive the two terms' values */
DA_API da_tensor *da_vae_loss(da_tape *t, const da_vae *m, da_tensor *x, da_tensor *x_hat,
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

DA_API da_unet_config da_unet_config_default(void);
DA_API da_status da_unet_config_load(da_unet_config *cfg, const char *path);
DA_API da_status da_unet_config_save(const da_unet_config *cfg, const char *path);
DA_API da_unet *da_unet_create(const da_unet_config *cfg, int trainable);   /* NULL on error */
DA_API void da_unet_init(da_unet *m, da_rng *rng);
DA_API da_status da_unet_load(da_unet *m, const char *path);
DA_API da_status da_unet_save(const da_unet *m, const char *path);
DA_API void da_unet_free(da_unet *m);
/* x_t (B, 4, H, W) (H, W even), timesteps (B) (integer values as floats),
 * context (B, T, context_dim), context_keep (B, T) or NULL (0 = padding,
 * each row needs one kept token) -> eps (B, 4, H, W). NULL +
 * da_last_error() when a shape does not fit the config (never an abort). */
DA_API da_tensor *da_unet_forward(da_tape *t, const da_unet *m, da_tensor *x, const float *timesteps,
                                  da_tensor *context, const uint8_t *context_keep);

/* The keys and values of the UNet's cross-attentions depend on the context
 * only: a sampler whose prompts stay the same over its steps computes them
 * once (da_unet_context_kv) and passes them to every step
 * (da_unet_forward_kv), which then gives da_unet_forward's bits. Block i
 * (in forward order: down.0, down.1, mid, up.1, up.0) has k[i] and v[i]
 * of shape (B, T, C_i), C_i its channels (ch[0] or ch[1]). */
#define DA_UNET_N_ATTN 5
typedef struct da_unet_kv {
    da_tensor *k[DA_UNET_N_ATTN], *v[DA_UNET_N_ATTN];
} da_unet_kv;
/* channels of attention block i (the last dim of its k and v) */
DA_API int da_unet_attn_channels(const da_unet *m, int i);
/* context (B, T, context_dim) -> kv; DA_ERR_INVALID on a context that does not fit */
DA_API da_status da_unet_context_kv(da_tape *t, const da_unet *m, da_tensor *context, da_unet_kv *kv);
/* da_unet_forward with the cross-attention keys and values taken from kv
 * (made from this context; kv NULL: computed, as da_unet_forward) */
DA_API da_tensor *da_unet_forward_kv(da_tape *t, const da_unet *m, da_tensor *x, const float *timesteps,
                                     da_tensor *context, const uint8_t *context_keep, const da_unet_kv *kv);

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

DA_API da_text_config da_text_config_default(void);
DA_API da_status da_text_config_check(const da_text_config *cfg);
DA_API da_status da_text_config_save(const da_text_config *cfg, const char *path);  /* atomic */
DA_API da_status da_text_config_load(da_text_config *cfg, const char *path);        /* strict */
/* NULL (and da_last_error) on a bad config or no memory; grads iff trainable */
DA_API da_text_encoder *da_text_encoder_create(const da_text_config *cfg, int trainable);
DA_API void da_text_encoder_init(da_text_encoder *m, da_rng *rng);
DA_API da_status da_text_encoder_load(da_text_encoder *m, const char *path);
DA_API da_status da_text_encoder_save(const da_text_encoder *m, const char *path);
DA_API void da_text_encoder_free(da_text_encoder *m);
/* ids (B, T) in [0, V); keep (B, T): 1 = real token (BOS/EOS included),
 * 0 = PAD; 1 <= T <= context -> token features (B, T, d_model) after final_ln
 * (the UNet's cross-attention context). NULL + da_last_error() on a bad id or size. */
DA_API da_tensor *da_text_encoder_forward(da_tape *t, const da_text_encoder *m, const int *ids,
                                          const uint8_t *keep, int B, int T);
/* eos (B) = index of the last real token of each row; DA_ERR_INVALID for an empty row */
DA_API da_status da_text_eos_positions(int *eos, const uint8_t *keep, int B, int T);
/* x (B, T, D), pos (B) in [0, T) -> (B, D) = x[b, pos[b], :]. This and pool:
 * NULL + da_last_error() on a bad shape or position (never an abort). */
DA_API da_tensor *da_text_gather(da_tape *t, da_tensor *x, const int *pos);
/* features (B, T, d_model), eos (B) -> text_projection(features[b, eos[b]]) (B, proj_dim) */
DA_API da_tensor *da_text_encoder_pool(da_tape *t, const da_text_encoder *m, da_tensor *features,
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

DA_API da_clip_config da_clip_config_default(void);
DA_API da_status da_clip_config_check(const da_clip_config *cfg);
DA_API da_status da_clip_config_save(const da_clip_config *cfg, const char *path);  /* atomic */
DA_API da_status da_clip_config_load(da_clip_config *cfg, const char *path);        /* strict */
DA_API da_clip *da_clip_create(const da_clip_config *cfg, int trainable);           /* NULL on error */
DA_API void da_clip_init(da_clip *m, da_rng *rng);   /* logit_scale = log(1/0.07) */
DA_API da_status da_clip_load(da_clip *m, const char *path);
DA_API da_status da_clip_save(const da_clip *m, const char *path);
DA_API void da_clip_free(da_clip *m);
/* images (B, in_channels, S, S) in [-1, 1] -> embeddings (B, embed_dim), not
 * normalised. NULL + da_last_error() when the shape does not match the config. */
DA_API da_tensor *da_clip_image_forward(da_tape *t, const da_clip *m, da_tensor *images);
/* the logit_scale parameter as a tape leaf, shape () */
DA_API da_tensor *da_clip_logit_scale(da_tape *t, const da_clip *m);
/* x (N, D) -> x / max(||x||_2, 1e-12) per row (torch.nn.functional.normalize);
 * this and the loss: NULL + da_last_error() on other shapes */
DA_API da_tensor *da_clip_normalize(da_tape *t, da_tensor *x);
/* Symmetric InfoNCE: logits (B, B) = min(exp(logit_scale), 100) *
 * normalize(img) @ normalize(txt)^T; loss = (CE(logits, arange) + CE(logits^T,
 * arange)) / 2. img_emb, txt_emb (B, E); logit_scale (). -> scalar */
DA_API da_tensor *da_clip_loss(da_tape *t, da_tensor *img_emb, da_tensor *txt_emb, da_tensor *logit_scale);
/* Plain floats, no tape. cos (N) = cosine similarity of rows a[i], b[i] (N, E);
 * score (N) = CLIPScore = 100 * max(cos, 0) (torchmetrics' convention). */
DA_API void da_clip_cosine(float *cos, const float *a, const float *b, int N, int E);
DA_API void da_clip_score(float *score, const float *img_emb, const float *txt_emb, int N, int E);

/* ------------------------------------------------------------------------ */
/* The PromptLoop refiner (src/models/refiner.c, docs/promptloop.md)         */
/* ------------------------------------------------------------------------ */

/* A small decoder-only transformer that reads the predicted clean latent of
 * a sampling step, the timestep, the user's query and the current prompt,
 * and writes the next prompt token by token. One sequence per row:
 *   [n_patches latent patch tokens][1 timestep token]
 *   [query: max_tokens][prompt: max_tokens][output so far: T_out]
 * token/patch/time embedding + learned position (over the whole sequence) +
 * segment embedding (5 segments); pre-LN blocks as the text encoder (causal
 * attention with key padding: PAD query/prompt tokens are invisible keys);
 * final_ln; lm_head (untied, no bias) on the output segment.
 * Token ids follow the tokenizer (dalign/data.h): PAD 0, BOS 1, EOS 2; the
 * models layer does not include the tokenizer, so vocab_size and max_tokens
 * are stored in the config (set them from da_vocab_size() and DA_MAX_TOKENS;
 * a refiner whose vocab_size differs from the tokenizer's must be refused by
 * its user). Parameters "patch_embed.weight", "time_mlp.0.weight",
 * "token_embedding.weight", "position_embedding.weight",
 * "segment_embedding.weight", "layers.0.attn.q_proj.weight", ...,
 * "final_ln.weight", "lm_head.weight". */
#define DA_REFINER_SEGMENTS 5   /* latent, time, query, prompt, output */
typedef struct da_refiner_config {
    int vocab_size;       /* the tokenizer's (da_vocab_size(): 34) */
    int max_tokens;       /* ids per text segment = DA_MAX_TOKENS (24) */
    int d_model;          /* 128 */
    int n_layers;         /* 3 */
    int n_heads;          /* 4 */
    int mlp_ratio;        /* MLP hidden width = mlp_ratio * d_model (4) */
    int latent_channels;  /* 4 */
    int latent_size;      /* latent height = width: 8 */
    int patch;            /* patch side: 2 -> (8/2)^2 = 16 patch tokens of 2x2x4 */
    int time_freq_dim;    /* sinusoidal timestep features, even: 64 */
} da_refiner_config;

typedef struct da_refiner {
    da_refiner_config cfg;
    da_params params;
} da_refiner;

DA_API da_refiner_config da_refiner_config_default(void);
DA_API da_status da_refiner_config_check(const da_refiner_config *cfg);
DA_API da_status da_refiner_config_save(const da_refiner_config *cfg, const char *path);  /* atomic */
DA_API da_status da_refiner_config_load(da_refiner_config *cfg, const char *path);        /* strict */
/* tokens in the whole input sequence for T_out output tokens */
DA_API int da_refiner_seq_len(const da_refiner_config *cfg, int T_out);
DA_API da_refiner *da_refiner_create(const da_refiner_config *cfg, int trainable);   /* NULL on error */
/* embeddings N(0, 0.02), the rest PyTorch's defaults (docs/promptloop.md) */
DA_API void da_refiner_init(da_refiner *m, da_rng *rng);
DA_API da_status da_refiner_load(da_refiner *m, const char *path);
DA_API da_status da_refiner_save(const da_refiner *m, const char *path);
DA_API void da_refiner_free(da_refiner *m);
/* Teacher forcing. x0 (B, latent_channels, latent_size, latent_size) the
 * predicted clean latent; timesteps (B) (integer values as floats);
 * query_ids, prompt_ids (B, max_tokens) in [0, V) with keep (B, max_tokens)
 * (1 = real token, 0 = PAD: masked out as a key); out_ids (B, T_out) the
 * output so far, BOS first, 1 <= T_out <= max_tokens -> logits
 * (B, T_out, V): row j predicts output token j + 1. The latent is a
 * constant (no gradient). NULL + da_last_error() on a bad id, size or NULL. */
DA_API da_tensor *da_refiner_forward(da_tape *t, const da_refiner *m, const float *x0, const float *timesteps,
                                     const int *query_ids, const uint8_t *query_keep, const int *prompt_ids,
                                     const uint8_t *prompt_keep, const int *out_ids, int B, int T_out);
/* 1 for the ids generation may write: every id but PAD, BOS and UNK (they
 * never occur inside a prompt; the pipeline refuses a prompt holding them).
 * A trainer's teacher-forced log-probs use the same set. */
DA_API int da_refiner_token_allowed(int id);
/* Autoregressive sampling: out_ids (B, max_tokens) = BOS t1 .. EOS PAD...
 * With a key/value cache: each row's observation and BOS go through the
 * layers once, then each new token as one slot over the cached keys and
 * values; the logits are da_refiner_forward's on the output so far (bit for
 * bit with the portable GEMM, within rounding with OpenBLAS). The next token
 * of every unfinished row comes from softmax(logits / temperature) over the
 * writable tokens, da_refiner_token_allowed (temperature 0: argmax, ties
 * to the lower id), computed with da_expf/da_logf; EOS ends a row, and is forced at slot
 * max_tokens - 1.
 * Randomness: the generator gives one seed per row (B da_rng_u64 draws, in
 * row order, whatever the temperature); row b's generator draws one
 * da_rand per sampled token. A row's tokens and log-probs depend only on its
 * inputs and its seed, bit for bit: not on the batch, the row's position or
 * the thread count (with the portable GEMM, not on the CPU either).
 * logprobs (B) or NULL: the sum over sampled tokens (the forced EOS
 * excluded) of log softmax(logits / temperature) at the chosen token
 * (temperature 0: log softmax(logits)). DA_ERR_INVALID on bad ids or sizes,
 * temperature < 0 or not finite; DA_ERR_NOMEM. */
DA_API da_status da_refiner_generate(const da_refiner *m, const float *x0, const float *timesteps,
                                     const int *query_ids, const uint8_t *query_keep, const int *prompt_ids,
                                     const uint8_t *prompt_keep, int B, float temperature, da_rng *rng,
                                     int *out_ids, float *logprobs);

/* ------------------------------------------------------------------------ */
/* The preference model (src/models/reward_net.c): the learned reward       */
/* behind the "pref" reward of dalign/rewards.h; its training is in         */
/* dalign/train.h.                                                          */
/* ------------------------------------------------------------------------ */

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
DA_API da_reward_net_config da_reward_net_config_default(void);
DA_API da_status da_reward_net_config_check(const da_reward_net_config *cfg);
DA_API da_status da_reward_net_config_save(const da_reward_net_config *cfg, const char *path);  /* atomic */
DA_API da_status da_reward_net_config_load(da_reward_net_config *cfg, const char *path);        /* strict */
DA_API da_reward_net *da_reward_net_create(const da_reward_net_config *cfg,
                                           int trainable);    /* NULL on error */
DA_API void da_reward_net_init(da_reward_net *m, da_rng *rng);
DA_API da_status da_reward_net_load(da_reward_net *m, const char *path);
DA_API da_status da_reward_net_save(const da_reward_net *m, const char *path);
DA_API void da_reward_net_free(da_reward_net *m);
/* images (B, 3, S, S) in [0, 1], ids and keep (B, T) from da_tokenize (T <= context)
 * -> scores (B). NULL + da_last_error() on a bad shape or id. */
DA_API da_tensor *da_reward_net_forward(da_tape *t, const da_reward_net *m, da_tensor *images, const int *ids,
                                        const uint8_t *keep, int T);
/* Bradley-Terry loss: r_w, r_l (N) scores of the preferred and the other
 * image -> scalar mean -log sigmoid(r_w - r_l); NULL + da_last_error() when
 * their shapes differ */
DA_API da_tensor *da_bt_loss(da_tape *t, da_tensor *r_w, da_tensor *r_l);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_MODELS_H */
