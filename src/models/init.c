/* One parameter initialiser for every model (params.h): PyTorch's defaults
 * from each entry's name and shape, with per-model rules on top. The
 * defaults are those of nn.Linear / nn.Conv2d (kaiming_uniform with a = sqrt(5),
 * which gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight, and the
 * same bound for its bias) and of the norms (scale 1, shift 0). */
#include <math.h>
#include <string.h>

#include "models/params.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* the Linear / Conv weight whose fan_in bounds entry e: e itself (2+ dims)
 * or, for a 1-D "X.bias", its "X.weight" with 2+ dims; -1 when neither */
static int fan_in_source(const da_params *p, int e)
{
    if (p->ndim[e] >= 2) return e;
    const char *name = p->names[e];
    size_t n = strlen(name);
    if (p->ndim[e] != 1 || !ends_with(name, ".bias")) return -1;
    char w[256];
    if (n - 5 + 8 > sizeof w) return -1;
    memcpy(w, name, n - 5);
    strcpy(w + n - 5, ".weight");
    int wi = da_params_find(p, w);
    return wi >= 0 && p->ndim[wi] >= 2 ? wi : -1;
}

static void init_default(const da_params *p, int e, float *x, size_t n, da_rng *rng)
{
    int wi = fan_in_source(p, e);
    if (wi >= 0) {
        size_t fan_in = da_shape_size(p->ndim[wi] - 1, p->shape[wi] + 1);
        da_init_uniform(rng, x, n, 1.0f / sqrtf((float)fan_in));
        return;
    }
    float v = p->ndim[e] == 1 && ends_with(p->names[e], ".weight") ? 1.0f : 0.0f;
    for (size_t i = 0; i < n; i++) x[i] = v;
}

static void init_by_rule(const da_init_rule *r, float *x, size_t n, da_rng *rng)
{
    if (r->kind == DA_INIT_CONST) {
        for (size_t i = 0; i < n; i++) x[i] = r->value;
        return;
    }
    da_randn(rng, x, n);
    for (size_t i = 0; i < n; i++) x[i] *= r->value;
}

void da_init_params(da_params *p, da_rng *rng, const da_init_rule *own, int n_own)
{
    for (int e = 0; e < p->n; e++) {
        float *x = p->data + p->offset[e];
        size_t n = da_shape_size(p->ndim[e], p->shape[e]);
        int r = 0;
        while (r < n_own && !ends_with(p->names[e], own[r].suffix)) r++;
        if (r < n_own) init_by_rule(&own[r], x, n, rng);
        else init_default(p, e, x, n, rng);
    }
}
