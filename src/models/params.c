/* Model parameters: a table of PyTorch-named tensors over one data buffer
 * and one gradient buffer. The table is built once at model creation; a small
 * open-addressing hash maps names to entries so forward code can ask for
 * "mid.attn.to_q.weight" by name. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/models.h"
#include "models/params.h"

typedef struct name_index {
    int cap;      /* power of two, > 2 * n */
    int *slot;    /* entry index or -1 */
} name_index;

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void index_rebuild(da_params *p)
{
    name_index *ix = p->index;
    if (!ix) {
        ix = calloc(1, sizeof *ix);
        if (!ix) abort();
        p->index = ix;
    }
    int cap = 64;
    while (cap < 2 * p->n + 2) cap *= 2;
    free(ix->slot);
    ix->slot = malloc((size_t)cap * sizeof(int));
    if (!ix->slot) abort();
    ix->cap = cap;
    for (int i = 0; i < cap; i++) ix->slot[i] = -1;
    for (int e = 0; e < p->n; e++) {
        uint32_t h = name_hash(p->names[e]) & (uint32_t)(cap - 1);
        while (ix->slot[h] >= 0) h = (h + 1) & (uint32_t)(cap - 1);
        ix->slot[h] = e;
    }
}

void da_params_init(da_params *p) { memset(p, 0, sizeof *p); }

int da_params_add(da_params *p, const char *name, int ndim, const int *shape)
{
    if (ndim < 0 || ndim > DA_MAX_DIMS || p->data) {
        da_log(DA_LOG_ERROR, "dalign: bad parameter entry '%s'", name);
        abort();
    }
    if (da_params_find(p, name) >= 0) {
        da_log(DA_LOG_ERROR, "dalign: duplicate parameter name '%s'", name);
        abort();
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        p->names = realloc(p->names, (size_t)cap * sizeof *p->names);
        p->ndim = realloc(p->ndim, (size_t)cap * sizeof *p->ndim);
        p->shape = realloc(p->shape, (size_t)cap * sizeof *p->shape);
        p->offset = realloc(p->offset, (size_t)cap * sizeof *p->offset);
        if (!p->names || !p->ndim || !p->shape || !p->offset) abort();
        p->cap = cap;
    }
    int e = p->n++;
    p->names[e] = strdup(name);
    if (!p->names[e]) abort();
    p->ndim[e] = ndim;
    memset(p->shape[e], 0, sizeof p->shape[e]);
    memcpy(p->shape[e], shape, (size_t)ndim * sizeof(int));
    p->offset[e] = p->total;
    /* a config's sizes can come from a user: the total must not wrap; the
     * overflow is reported by da_params_alloc */
    size_t numel = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || da_size_mul(numel, (size_t)shape[i], name, &numel) != DA_OK) p->overflow = 1;
    if (!p->overflow && da_size_add(p->total, numel, name, &p->total) != DA_OK) p->overflow = 1;
    index_rebuild(p);
    return e;
}

da_status da_params_alloc(da_params *p, int with_grad)
{
    size_t n = p->total ? p->total : 1, bytes;
    if (p->overflow || da_size_mul(n, 2 * sizeof(float), "parameters", &bytes) != DA_OK)
        return da_fail(DA_ERR_RANGE, "the model's parameter count overflows (a config size too large)");
    p->data = calloc(n, sizeof(float));
    p->grad = with_grad ? calloc(n, sizeof(float)) : NULL;
    if (!p->data || (with_grad && !p->grad))
        return da_fail(DA_ERR_NOMEM, "cannot allocate %zu parameters", p->total);
    return DA_OK;
}

int da_params_find(const da_params *p, const char *name)
{
    const name_index *ix = p->index;
    if (!ix) return -1;
    uint32_t h = name_hash(name) & (uint32_t)(ix->cap - 1);
    for (; ix->slot[h] >= 0; h = (h + 1) & (uint32_t)(ix->cap - 1))
        if (!strcmp(p->names[ix->slot[h]], name)) return ix->slot[h];
    return -1;
}

float *da_params_get(const da_params *p, const char *name)
{
    int e = da_params_find(p, name);
    return e >= 0 && p->data ? p->data + p->offset[e] : NULL;
}

da_tensor *da_params_leaf(da_tape *t, const da_params *p, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int e = da_params_find(p, name);
    if (e < 0) {
        da_log(DA_LOG_ERROR, "dalign: model has no parameter '%s'", name);
        abort();
    }
    return da_leaf(t, p->data + p->offset[e], p->grad ? p->grad + p->offset[e] : NULL, p->ndim[e],
                   p->shape[e]);
}

void da_params_zero_grad(da_params *p)
{
    if (p->grad) memset(p->grad, 0, p->total * sizeof(float));
}

da_status da_params_save(const da_params *p, const char *path, const da_st_meta *meta, int n_meta)
{
    da_st_entry *e = calloc((size_t)(p->n ? p->n : 1), sizeof *e);
    if (!e) return da_fail(DA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < p->n; i++) {
        e[i].name = p->names[i];
        e[i].data = p->data + p->offset[i];
        e[i].ndim = p->ndim[i];
        memcpy(e[i].shape, p->shape[i], sizeof e[i].shape);
    }
    da_status s = da_st_write(path, e, p->n, meta, n_meta);
    free(e);
    return s;
}

/* All or nothing: the tensors are read into a staging buffer and copied over
 * the model only when every name and shape matched, so a failed load never
 * leaves a mix of old and new weights. */
da_status da_params_load_st(da_params *p, const da_safetensors *st)
{
    for (int i = 0; i < st->n_tensors; i++)
        if (da_params_find(p, st->tensors[i].name) < 0)
            return da_fail(DA_ERR_FORMAT, "unexpected tensor '%s' (not a parameter of this model)",
                           st->tensors[i].name);
    float *stage = malloc((p->total ? p->total : 1) * sizeof(float));
    if (!stage) return da_fail(DA_ERR_NOMEM, "cannot allocate %zu parameters", p->total);
    for (int i = 0; i < p->n; i++) {
        da_status s = da_st_read(st, p->names[i], stage + p->offset[i], p->ndim[i], p->shape[i]);
        /* a NaN or inf weight would turn every output black without an error */
        size_t bad = s == DA_OK ? da_first_nonfinite(stage + p->offset[i], da_shape_size(p->ndim[i], p->shape[i])) : 0;
        if (s == DA_OK && bad != (size_t)-1)
            s = da_fail(DA_ERR_FORMAT, "tensor '%s' holds a non-finite value (%g at element %zu)", p->names[i],
                        (double)stage[p->offset[i] + bad], bad);
        if (s != DA_OK) {
            free(stage);
            return s;
        }
    }
    memcpy(p->data, stage, p->total * sizeof(float));
    free(stage);
    return DA_OK;
}

da_status da_params_load_with(da_params *p, const char *path, da_params_extra_fn extra, void *ctx)
{
    da_safetensors *st = NULL;
    da_status s = da_st_open(path, &st);
    /* the parser's messages (a truncated file, a bad header) do not name
     * the file; the reader's (cannot open, too large) already do */
    if (s == DA_ERR_FORMAT) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", da_last_error());
        return da_fail(s, "%s: %s", path, msg);
    }
    if (s != DA_OK) return s;
    s = da_params_load_st(p, st);
    if (s == DA_OK && extra) s = extra(st, ctx);
    da_st_close(st);
    if (s != DA_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", da_last_error());
        return da_fail(s, "%s: %s", path, msg);
    }
    return DA_OK;
}

da_status da_params_load(da_params *p, const char *path) { return da_params_load_with(p, path, NULL, NULL); }

void da_params_free(da_params *p)
{
    for (int i = 0; i < p->n; i++) free(p->names[i]);
    free(p->names);
    free(p->ndim);
    free(p->shape);
    free(p->offset);
    free(p->data);
    free(p->grad);
    if (p->index) free(((name_index *)p->index)->slot);
    free(p->index);
    memset(p, 0, sizeof *p);
}

void da_init_uniform(da_rng *rng, float *x, size_t n, float bound)
{
    da_rand(rng, x, n);
    for (size_t i = 0; i < n; i++) x[i] = (2.0f * x[i] - 1.0f) * bound;
}
