/* The training harness shared by every trainer (docs/training.md).
 *
 * A trainer supplies one function that runs the forward and backward of a
 * micro-batch; the harness owns everything around it:
 *
 *   for step in [tr->step, stop):
 *       zero grads
 *       for micro in [0, K): tape reset; step_fn(micro)      grads += d(loss_k)
 *       grads *= 1/K                                           mean over the batch
 *       norm = clip(grads)                                     global L2 norm
 *       lr = schedule(step); AdamW(step + 1); EMA
 *       step++; metrics line; progress; checkpoint; stop on a signal
 *
 * The complete state of a run is: params, AdamW m and v, EMA, step, and the
 * two RNGs. Checkpoints store all of it bit for bit, so a resumed run
 * continues with exactly the bits of an uninterrupted one. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "core/safetensors_meta.h"
#include "dalign/train.h"
#include "train/pretrain.h"

#define CKPT_FORMAT "dalign.trainer.v1"
#define NOISE_SEED_XOR 0x9e3779b9u

/* ------------------------------------------------------------------------ */
/* Signals: the handler only sets a flag; the loop checks it between steps. */
/* ------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

typedef struct saved_handlers {
    struct sigaction old_int, old_term;
    int installed;
} saved_handlers;

static void signals_install(saved_handlers *h)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  /* file writes in progress carry on */
    stop_signal = 0;
    sigaction(SIGINT, &sa, &h->old_int);
    sigaction(SIGTERM, &sa, &h->old_term);
    /* a signal the parent chose to ignore (a background job of a script,
     * nohup) stays ignored, as shells do */
    if (h->old_int.sa_handler == SIG_IGN) sigaction(SIGINT, &h->old_int, NULL);
    if (h->old_term.sa_handler == SIG_IGN) sigaction(SIGTERM, &h->old_term, NULL);
    h->installed = 1;
}

static void signals_restore(saved_handlers *h)
{
    if (!h->installed) return;
    sigaction(SIGINT, &h->old_int, NULL);
    sigaction(SIGTERM, &h->old_term, NULL);
    h->installed = 0;
}

static const char *signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */
/* ------------------------------------------------------------------------ */

da_trainer_config da_trainer_defaults(void)
{
    return (da_trainer_config){
        .name = "train", .total_steps = 1000, .batch = 32, .micro_batches = 1,
        .lr = 1e-3f, .min_lr = 0.0f, .warmup = 0, .schedule = DA_LR_CONSTANT,
        .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
        .clip = 1.0f, .ema_decay = 0.0f, .seed = 0,
        .log_every = 1, .handle_signals = 1,
    };
}

static da_status config_check(const da_trainer_config *c)
{
    if (!c->name || !da_metric_name_ok(c->name))
        return da_fail(DA_ERR_INVALID, "trainer name must be letters, digits, '_', '.', '-'");
    if (c->total_steps < 1) return da_fail(DA_ERR_INVALID, "total_steps must be >= 1, got %ld", c->total_steps);
    if (c->batch < 1 || c->micro_batches < 1 || c->batch % c->micro_batches != 0)
        return da_fail(DA_ERR_INVALID, "batch %d must be a positive multiple of micro_batches %d", c->batch,
                       c->micro_batches);
    if (!(c->lr > 0.0f) || !isfinite(c->lr) || !(c->min_lr >= 0.0f) || !isfinite(c->min_lr))
        return da_fail(DA_ERR_INVALID, "learning rates must be finite, lr > 0 and min_lr >= 0");
    if (c->warmup < 0) return da_fail(DA_ERR_INVALID, "warmup must be >= 0, got %ld", c->warmup);
    if (c->schedule != DA_LR_CONSTANT && c->schedule != DA_LR_COSINE)
        return da_fail(DA_ERR_INVALID, "unknown LR schedule %d", (int)c->schedule);
    if (!(c->beta1 >= 0.0f && c->beta1 < 1.0f) || !(c->beta2 >= 0.0f && c->beta2 < 1.0f) || !(c->eps > 0.0f) ||
        !(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay))
        return da_fail(DA_ERR_INVALID, "AdamW needs 0 <= beta < 1, eps > 0, weight_decay >= 0");
    if (!(c->clip >= 0.0f) || !isfinite(c->clip)) return da_fail(DA_ERR_INVALID, "clip must be >= 0");
    if (!(c->ema_decay >= 0.0f && c->ema_decay < 1.0f))
        return da_fail(DA_ERR_INVALID, "ema_decay must be in [0, 1), got %g", (double)c->ema_decay);
    if (c->stop_at < 0 || c->ckpt_every < 0 || c->log_every < 1 || c->progress_every < 0)
        return da_fail(DA_ERR_INVALID, "stop_at, ckpt_every, progress_every must be >= 0 and log_every >= 1");
    return DA_OK;
}

/* The stored config: the fields that decide the bits of a run. Each is
 * written as text that round-trips exactly ("%.9g" for a float), so equal
 * text means equal values. */
enum { CFG_TEXT = 48 };
typedef struct cfg_field {
    const char *key;
    char value[CFG_TEXT];
} cfg_field;
#define N_CFG_FIELDS 14

static void config_fields(const da_trainer_config *c, cfg_field f[N_CFG_FIELDS])
{
    int i = 0;
#define FIELD(k, ...) (f[i].key = "config." k, snprintf(f[i].value, CFG_TEXT, __VA_ARGS__), i++)
    FIELD("total_steps", "%ld", c->total_steps);
    FIELD("batch", "%d", c->batch);
    FIELD("micro_batches", "%d", c->micro_batches);
    FIELD("lr", "%.9g", (double)c->lr);
    FIELD("min_lr", "%.9g", (double)c->min_lr);
    FIELD("warmup", "%ld", c->warmup);
    FIELD("schedule", "%s", c->schedule == DA_LR_COSINE ? "cosine" : "constant");
    FIELD("beta1", "%.9g", (double)c->beta1);
    FIELD("beta2", "%.9g", (double)c->beta2);
    FIELD("eps", "%.9g", (double)c->eps);
    FIELD("weight_decay", "%.9g", (double)c->weight_decay);
    FIELD("clip", "%.9g", (double)c->clip);
    FIELD("ema_decay", "%.9g", (double)c->ema_decay);
    FIELD("seed", "%llu", (unsigned long long)c->seed);
#undef FIELD
}

/* ------------------------------------------------------------------------ */
/* Create / free                                                            */
/* ------------------------------------------------------------------------ */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

da_status da_trainer_create(da_trainer **out, const da_trainer_config *cfg, da_params *params)
{
    *out = NULL;
    da_status s = config_check(cfg);
    if (s != DA_OK) return s;
    if (!params || !params->data || !params->grad)
        return da_fail(DA_ERR_INVALID, "the model to train must be allocated with gradients");
    da_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return da_fail(DA_ERR_NOMEM, "out of memory");
    tr->cfg = *cfg;
    tr->cfg.name = dup_or_null(cfg->name);
    tr->cfg.ckpt_path = dup_or_null(cfg->ckpt_path);
    tr->cfg.metrics_path = dup_or_null(cfg->metrics_path);
    tr->params = params;
    size_t n = params->total ? params->total : 1;
    tr->m = calloc(n, sizeof(float));
    tr->v = calloc(n, sizeof(float));
    tr->ema = cfg->ema_decay > 0.0f ? malloc(n * sizeof(float)) : NULL;
    if (!tr->cfg.name || (cfg->ckpt_path && !tr->cfg.ckpt_path) || (cfg->metrics_path && !tr->cfg.metrics_path) ||
        !tr->m || !tr->v || (cfg->ema_decay > 0.0f && !tr->ema)) {
        da_trainer_free(tr);
        return da_fail(DA_ERR_NOMEM, "cannot allocate the optimizer state (%zu parameters)", params->total);
    }
    if (tr->ema) memcpy(tr->ema, params->data, params->total * sizeof(float));
    tr->micro_size = cfg->batch / cfg->micro_batches;
    da_rng_seed(&tr->data_rng, cfg->seed);
    da_rng_seed(&tr->noise_rng, cfg->seed ^ NOISE_SEED_XOR);
    da_tape_init(&tr->tape, (size_t)1 << 24);
    *out = tr;
    return DA_OK;
}

void da_trainer_free(da_trainer *tr)
{
    if (!tr) return;
    free((char *)tr->cfg.name);
    free((char *)tr->cfg.ckpt_path);
    free((char *)tr->cfg.metrics_path);
    free(tr->m);
    free(tr->v);
    free(tr->ema);
    if (tr->tape.arena.block_bytes) da_tape_free(&tr->tape);
    free(tr);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */
/* ------------------------------------------------------------------------ */

static const char *const BUF_PREFIX[4] = {"param.", "adam_m.", "adam_v.", "ema."};

static const float *state_buffer(const da_trainer *tr, int which)
{
    const float *b[4] = {tr->params->data, tr->m, tr->v, tr->ema};
    return b[which];
}

static int n_buffers(const da_trainer *tr) { return tr->ema ? 4 : 3; }

static char *prefixed(const char *prefix, const char *name)
{
    size_t n = strlen(prefix) + strlen(name) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", prefix, name);
    return s;
}

#define STATE_PREFIX "state."

da_status da_trainer_add_state(da_trainer *tr, const char *name, float *data, size_t n)
{
    if (!tr || !name || !data || n == 0 || n > (size_t)INT32_MAX)
        return da_fail(DA_ERR_INVALID, "da_trainer_add_state: bad arguments");
    if (tr->n_state == DA_TRAINER_MAX_STATE)
        return da_fail(DA_ERR_RANGE, "da_trainer_add_state: at most %d state buffers", DA_TRAINER_MAX_STATE);
    if (strlen(name) >= sizeof tr->state[0].name)
        return da_fail(DA_ERR_INVALID, "da_trainer_add_state: name '%s' too long", name);
    for (int i = 0; i < tr->n_state; i++)
        if (!strcmp(tr->state[i].name, name)) return da_fail(DA_ERR_INVALID, "state '%s' registered twice", name);
    snprintf(tr->state[tr->n_state].name, sizeof tr->state[0].name, "%s", name);
    tr->state[tr->n_state].data = data;
    tr->state[tr->n_state].n = n;
    tr->n_state++;
    return DA_OK;
}

da_status da_trainer_save(const da_trainer *tr, const char *path)
{
    const da_params *p = tr->params;
    int nb = n_buffers(tr), np = nb * p->n, n = np + tr->n_state;
    da_st_entry *e = calloc((size_t)(n ? n : 1), sizeof *e);
    if (!e) return da_fail(DA_ERR_NOMEM, "out of memory");
    da_status s = DA_OK;
    for (int b = 0; b < nb; b++) {
        for (int i = 0; i < p->n; i++) {
            da_st_entry *x = &e[b * p->n + i];
            x->name = prefixed(BUF_PREFIX[b], p->names[i]);
            if (!x->name) s = da_fail(DA_ERR_NOMEM, "out of memory");
            x->data = state_buffer(tr, b) + p->offset[i];
            x->ndim = p->ndim[i];
            memcpy(x->shape, p->shape[i], sizeof x->shape);
        }
    }
    for (int k = 0; k < tr->n_state; k++) {
        da_st_entry *x = &e[np + k];
        x->name = prefixed(STATE_PREFIX, tr->state[k].name);
        if (!x->name) s = da_fail(DA_ERR_NOMEM, "out of memory");
        x->data = tr->state[k].data;
        x->ndim = 1;
        x->shape[0] = (int)tr->state[k].n;
    }
    cfg_field f[N_CFG_FIELDS];
    config_fields(&tr->cfg, f);
    char step[32], time_s[32];
    char *rng_data = malloc(DA_RNG_TEXT), *rng_noise = malloc(DA_RNG_TEXT);
    if (!rng_data || !rng_noise) s = da_fail(DA_ERR_NOMEM, "out of memory");
    if (s == DA_OK) {
        snprintf(step, sizeof step, "%ld", tr->step);
        snprintf(time_s, sizeof time_s, "%.3f", tr->elapsed_s);
        da_rng_to_text(&tr->data_rng, rng_data);
        da_rng_to_text(&tr->noise_rng, rng_noise);
        da_st_meta meta[6 + N_CFG_FIELDS] = {
            {"format", CKPT_FORMAT}, {"name", (char *)tr->cfg.name}, {"step", step},
            {"time_s", time_s},      {"rng.data", rng_data},         {"rng.noise", rng_noise},
        };
        for (int i = 0; i < N_CFG_FIELDS; i++) meta[6 + i] = (da_st_meta){(char *)f[i].key, f[i].value};
        s = da_st_write(path, e, n, meta, 6 + N_CFG_FIELDS);
    }
    for (int i = 0; i < n; i++) free((char *)e[i].name);
    free(e);
    free(rng_data);
    free(rng_noise);
    return s;
}

static void shape_text(char *buf, size_t n, int ndim, const int64_t *s64, const int *s32)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", s64 ? (long long)s64[d] : (long long)s32[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Every tensor the trainer needs is present with the model's shape, and
 * the file holds nothing else. */
static da_status check_tensors(const da_trainer *tr, const da_safetensors *st)
{
    const da_params *p = tr->params;
    int nb = n_buffers(tr);
    char name[512];
    for (int b = 0; b < nb; b++) {
        for (int i = 0; i < p->n; i++) {
            snprintf(name, sizeof name, "%s%s", BUF_PREFIX[b], p->names[i]);
            const da_st_tensor *t = da_st_find(st, name);
            if (!t) return da_fail(DA_ERR_FORMAT, "tensor '%s' is missing", name);
            int same = t->ndim == p->ndim[i];
            for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == p->shape[i][d];
            if (!same) {
                char got[128], want[128];
                shape_text(got, sizeof got, t->ndim, t->shape, NULL);
                shape_text(want, sizeof want, p->ndim[i], NULL, p->shape[i]);
                return da_fail(DA_ERR_FORMAT, "tensor '%s' has shape %s, this model has %s", name, got, want);
            }
        }
    }
    for (int k = 0; k < tr->n_state; k++) {
        snprintf(name, sizeof name, STATE_PREFIX "%s", tr->state[k].name);
        const da_st_tensor *t = da_st_find(st, name);
        if (!t) return da_fail(DA_ERR_FORMAT, "trainer state '%s' is missing", name);
        if (t->ndim != 1 || (size_t)t->shape[0] != tr->state[k].n)
            return da_fail(DA_ERR_FORMAT, "trainer state '%s' has %lld values, this run keeps %zu", name,
                           (long long)t->numel, tr->state[k].n);
    }
    if (st->n_tensors != nb * p->n + tr->n_state) {
        for (int i = 0; i < st->n_tensors; i++) {
            const char *nm = st->tensors[i].name, *dot = strchr(nm, '.');
            if (!strncmp(nm, STATE_PREFIX, strlen(STATE_PREFIX)))
                return da_fail(DA_ERR_FORMAT, "trainer state '%s' is not kept by this run", nm);
            if (!dot || da_params_find(p, dot + 1) < 0)
                return da_fail(DA_ERR_FORMAT, "tensor '%s' is not part of this model", nm);
        }
        return da_fail(DA_ERR_FORMAT, "holds %d tensors, this model needs %d", st->n_tensors,
                       nb * p->n + tr->n_state);
    }
    return DA_OK;
}

static da_status check_meta(const da_trainer *tr, const da_safetensors *st, long *step, da_rng *rd, da_rng *rn)
{
    const char *fmt = da_st_meta_get(st, "format");
    if (!fmt || strcmp(fmt, CKPT_FORMAT))
        return da_fail(DA_ERR_FORMAT, "not a dalign trainer checkpoint (metadata format is '%s', want '%s')",
                       fmt ? fmt : "(none)", CKPT_FORMAT);
    const char *name = da_st_meta_get(st, "name");
    if (!name || strcmp(name, tr->cfg.name))
        return da_fail(DA_ERR_INVALID, "was written by trainer '%s', this is '%s'", name ? name : "(none)",
                       tr->cfg.name);
    cfg_field f[N_CFG_FIELDS];
    config_fields(&tr->cfg, f);
    for (int i = 0; i < N_CFG_FIELDS; i++) {
        const char *v = da_st_meta_get(st, f[i].key);
        if (!v || strcmp(v, f[i].value))
            return da_fail(DA_ERR_INVALID, "%s is %s in the checkpoint but %s in this run (resuming needs the same config)",
                           f[i].key, v ? v : "(missing)", f[i].value);
    }
    /* the caller puts the file name in front */
    da_status s = da_st_meta_long(st, NULL, "step", 0, tr->cfg.total_steps, step);
    if (s != DA_OK) return s;
    if (da_rng_from_text(rd, da_st_meta_get(st, "rng.data")) ||
        da_rng_from_text(rn, da_st_meta_get(st, "rng.noise")))
        return da_fail(DA_ERR_FORMAT, "bad RNG state in the metadata");
    return DA_OK;
}

/* a checkpoint tensor holding NaN or infinity (a run that diverged and was
 * saved anyway, a damaged file) is refused by name */
static da_status check_finite_tensor(const da_safetensors *st, const char *prefix, const char *param)
{
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix, param);
    const da_st_tensor *t = da_st_find(st, name);
    float *x = malloc((t->numel ? t->numel : 1) * sizeof(float));
    if (!x) return da_fail(DA_ERR_NOMEM, "out of memory");
    da_st_to_f32(st, t, x);
    size_t bad = da_first_nonfinite(x, t->numel);
    free(x);
    if (bad == (size_t)-1) return DA_OK;
    return da_fail(DA_ERR_FORMAT, "tensor '%s' holds a non-finite value at element %zu", name, bad);
}

/* A checkpoint that cannot be read at all (a folder, an empty file, a file
 * cut short by a full disk) is named in the message like every other reason
 * a resume is refused: "cannot resume from PATH: why". */
static da_status open_for_resume(const char *path, da_safetensors **st)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return da_fail(DA_ERR_IO, "cannot resume from %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return da_fail(DA_ERR_IO, "cannot resume from %s: it is a directory, not a checkpoint file", path);
    if (S_ISREG(sb.st_mode) && sb.st_size == 0)
        return da_fail(DA_ERR_FORMAT, "cannot resume from %s: the file is empty (not a checkpoint)", path);
    da_status s = da_st_open(path, st);
    if (s == DA_OK) return DA_OK;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", da_last_error());
    return da_fail(s, "cannot resume from %s: %s (a truncated or damaged checkpoint?)", path, msg);
}

da_status da_trainer_resume(da_trainer *tr, const char *path)
{
    da_safetensors *st = NULL;
    da_status s = open_for_resume(path, &st);
    if (s != DA_OK) return s;
    long step = 0;
    da_rng rd, rn;
    s = check_meta(tr, st, &step, &rd, &rn);
    if (s == DA_OK) s = check_tensors(tr, st);
    for (int b = 0; s == DA_OK && b < n_buffers(tr); b++)
        for (int i = 0; s == DA_OK && i < tr->params->n; i++)
            s = check_finite_tensor(st, BUF_PREFIX[b], tr->params->names[i]);
    if (s != DA_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", da_last_error());
        da_st_close(st);
        return da_fail(s, "cannot resume from %s: %s", path, msg);
    }
    /* validated: from here on nothing can fail, the trainer changes at once */
    const da_params *p = tr->params;
    float *dst[4] = {p->data, tr->m, tr->v, tr->ema};
    char name[512];
    for (int b = 0; b < n_buffers(tr); b++) {
        for (int i = 0; i < p->n; i++) {
            snprintf(name, sizeof name, "%s%s", BUF_PREFIX[b], p->names[i]);
            da_st_to_f32(st, da_st_find(st, name), dst[b] + p->offset[i]);
        }
    }
    for (int k = 0; k < tr->n_state; k++) {
        snprintf(name, sizeof name, STATE_PREFIX "%s", tr->state[k].name);
        da_st_to_f32(st, da_st_find(st, name), tr->state[k].data);
    }
    const char *t = da_st_meta_get(st, "time_s");
    tr->elapsed_s = t ? strtod(t, NULL) : 0.0;
    tr->step = step;
    tr->data_rng = rd;
    tr->noise_rng = rn;
    tr->resumed = 1;
    da_st_close(st);
    return DA_OK;
}

/* Whose is the checkpoint at path (pretrain.h)? Read the way resume reads
 * it: the format, the trainer name, the stored config fields (keys: the
 * fields to compare, NULL for all), the step. */
da_status dp_ckpt_describe(const char *path, const da_trainer_config *tc, const char *const *keys,
                           dp_ckpt_info *info)
{
    memset(info, 0, sizeof *info);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        info->kind = errno == ENOENT ? DP_CKPT_ABSENT : DP_CKPT_OTHER_FILE;
        if (info->kind == DP_CKPT_OTHER_FILE) snprintf(info->why, sizeof info->why, "%s", strerror(errno));
        return DA_OK;
    }
    info->kind = DP_CKPT_OTHER_FILE;
    if (!S_ISREG(sb.st_mode)) {
        snprintf(info->why, sizeof info->why, "not a regular file");
        return DA_OK;
    }
    da_safetensors *st = NULL;
    if (da_st_open(path, &st) != DA_OK) {
        snprintf(info->why, sizeof info->why, "unreadable as a checkpoint: %s", da_last_error());
        return DA_OK;
    }
    const char *fmt = da_st_meta_get(st, "format"), *name = da_st_meta_get(st, "name");
    const char *step = da_st_meta_get(st, "step"), *total = da_st_meta_get(st, "config.total_steps");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) || !name) {
        snprintf(info->why, sizeof info->why, "not a dalign trainer checkpoint");
        da_st_close(st);
        return DA_OK;
    }
    snprintf(info->name, sizeof info->name, "%s", name);
    info->step = step ? strtol(step, NULL, 10) : -1;
    info->total = total ? strtol(total, NULL, 10) : -1;
    info->kind = DP_CKPT_SAME_RUN;
    if (strcmp(name, tc->name)) {
        info->kind = DP_CKPT_OTHER_RUN;
        snprintf(info->why, sizeof info->why, "trainer '%s', this run is '%s'", name, tc->name);
    }
    cfg_field f[N_CFG_FIELDS];
    config_fields(tc, f);
    for (int i = 0; i < N_CFG_FIELDS && info->kind == DP_CKPT_SAME_RUN; i++) {
        int wanted = !keys;
        for (int k = 0; keys && keys[k] && !wanted; k++) wanted = !strcmp(f[i].key + strlen("config."), keys[k]);
        const char *v = da_st_meta_get(st, f[i].key);
        if (!wanted || (v && !strcmp(v, f[i].value))) continue;
        info->kind = DP_CKPT_OTHER_RUN;
        snprintf(info->why, sizeof info->why, "%s %s there, %s in this run", f[i].key + strlen("config."),
                 v ? v : "(missing)", f[i].value);
    }
    da_st_close(st);
    return DA_OK;
}

da_status da_trainer_save_weights(const da_trainer *tr, const char *path, int use_ema, const da_st_meta *meta,
                                  int n_meta)
{
    /* same table, EMA data: a shallow copy of the table pointing at the EMA */
    da_params view = *tr->params;
    if (use_ema && tr->ema) view.data = tr->ema;
    /* never publish weights that would make every output black */
    size_t bad = da_first_nonfinite(view.data, view.total);
    if (bad != (size_t)-1)
        return da_fail(DA_ERR_RANGE, "%s: not written: the %s weights hold a non-finite value at element %zu", path,
                       view.data == tr->ema ? "EMA" : "trained", bad);
    return da_params_save(&view, path, meta, n_meta);
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

void da_trainer_metric(da_trainer *tr, const char *name, double value)
{
    int i = 0;
    while (i < tr->n_metrics && strcmp(tr->metric_name[i], name)) i++;
    if (i == tr->n_metrics) {
        /* a trainer's own metric names are fixed strings: a bad one is a bug */
        if (i == DA_TRAINER_MAX_METRICS || !da_metric_name_ok(name)) {
            da_log(DA_LOG_WARN, "dalign: bad or too many trainer metrics at '%s'", name);
            abort();
        }
        snprintf(tr->metric_name[i], sizeof tr->metric_name[i], "%s", name);
        tr->metric_sum[i] = 0.0;
        tr->metric_count[i] = 0;
        tr->n_metrics++;
    }
    tr->metric_sum[i] += value;
    tr->metric_count[i]++;
}

/* One optimizer step: K micro-batches, then the update. */
static da_status train_step(da_trainer *tr, da_step_fn fn, void *user)
{
    da_params *p = tr->params;
    const da_trainer_config *c = &tr->cfg;
    const int K = c->micro_batches;
    da_params_zero_grad(p);
    tr->n_metrics = 0;
    double loss_sum = 0.0;
    for (int k = 0; k < K; k++) {
        da_tape_reset(&tr->tape);
        float loss = NAN;
        da_status s = fn(tr, &tr->tape, k, user, &loss);
        if (s != DA_OK) return s;
        loss_sum += loss;
    }
    tr->loss = (float)(loss_sum / K);
    if (!isfinite(tr->loss))
        return da_fail(DA_ERR_RANGE, "loss is %g at step %ld; stopping (the last checkpoint is kept)",
                       (double)tr->loss, tr->step + 1);
    if (K > 1) {
        /* each micro-batch loss is a mean over its examples: 1/K makes the
         * sum the batch mean (exact for a power-of-two K) */
        const float inv = 1.0f / (float)K;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < p->total; i++) p->grad[i] *= inv;
    }
    tr->grad_norm = c->clip > 0.0f ? da_grad_clip(p->grad, p->total, c->clip) : da_grad_norm(p->grad, p->total);
    tr->lr = da_lr_at(c->schedule, c->lr, c->min_lr, tr->step, c->warmup, c->total_steps);
    da_adamw opt = {.lr = tr->lr, .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps, .weight_decay = c->weight_decay};
    da_adamw_step(p->data, p->grad, tr->m, tr->v, p->total, tr->step + 1, &opt);
    if (tr->ema) da_ema_update(tr->ema, p->data, p->total, c->ema_decay);
    tr->step++;
    return DA_OK;
}

static da_status log_step(da_trainer *tr, da_metrics_log *log)
{
    da_metric f[5 + DA_TRAINER_MAX_METRICS] = {
        {"loss", tr->loss, NULL},
        {"lr", tr->lr, NULL},
        {"grad_norm", tr->grad_norm, NULL},
        {"time_s", tr->elapsed_s, "%.3f"},
    };
    int n = 4;
    for (int i = 0; i < tr->n_metrics; i++)
        f[n++] = (da_metric){tr->metric_name[i], tr->metric_sum[i] / tr->metric_count[i], NULL};
    return da_metrics_write(log, tr->step, f, n);
}

static da_status checkpoint(da_trainer *tr, da_metrics_log *log)
{
    da_status s = da_trainer_save(tr, tr->cfg.ckpt_path);
    if (s == DA_OK) s = da_metrics_sync(log);  /* the log covers the checkpoint */
    return s;
}

da_status da_trainer_run(da_trainer *tr, da_step_fn fn, void *user)
{
    const da_trainer_config *c = &tr->cfg;
    long stop = c->stop_at > 0 && c->stop_at < c->total_steps ? c->stop_at : c->total_steps;
    da_metrics_log log = {-1};
    da_status s = DA_OK;
    /* a fresh run starts a new log; a continued one keeps lines up to tr->step */
    long keep = tr->resumed || tr->step > 0 ? tr->step : -1;
    if (c->metrics_path) s = da_metrics_open(&log, c->metrics_path, keep);
    if (s != DA_OK) return s;
    da_progress bar;
    da_progress_init(&bar, c->progress ? 2 : -1, c->name, tr->step, stop, c->progress_every);
    saved_handlers sh = {0};
    if (c->handle_signals) signals_install(&sh);
    tr->stop_signal = 0;
    double t0 = da_now_s(), elapsed0 = tr->elapsed_s;
    while (tr->step < stop && s == DA_OK) {
        s = train_step(tr, fn, user);
        if (s != DA_OK) break;
        tr->elapsed_s = elapsed0 + (da_now_s() - t0);
        int sig = c->handle_signals ? stop_signal : 0;
        int last = tr->step == stop || sig;
        if (tr->step % c->log_every == 0 || last) s = log_step(tr, &log);
        da_progress_update(&bar, tr->step, tr->loss);
        if (s == DA_OK && c->ckpt_path && (last || (c->ckpt_every > 0 && tr->step % c->ckpt_every == 0)))
            s = checkpoint(tr, &log);
        if (sig) {
            tr->stop_signal = sig;
            break;
        }
    }
    da_progress_finish(&bar);
    /* handlers stay ours until the checkpoint is on disk: a second Ctrl-C
     * while saving only sets the flag again */
    signals_restore(&sh);
    da_metrics_close(&log);
    if (tr->stop_signal && c->progress) {
        if (c->ckpt_path && s == DA_OK)
            da_log(DA_LOG_INFO, "%s: %s at step %ld: checkpoint saved to %s (continue with --resume)", c->name,
                    signal_name(tr->stop_signal), tr->step, c->ckpt_path);
        else
            da_log(DA_LOG_INFO, "%s: %s at step %ld: stopped (no checkpoint path)", c->name,
                    signal_name(tr->stop_signal), tr->step);
    }
    return s;
}

int da_trainer_exit_code(const da_trainer *tr, da_status status)
{
    if (status != DA_OK) return 1;
    return tr->stop_signal ? 128 + tr->stop_signal : 0;
}
